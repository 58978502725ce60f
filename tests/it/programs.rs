//! Visual programs: parser, validator, EVAL, interpreter, oracle, converter.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use proptest::prelude::*;
use serde_json::Value;
use visprog_distiller::data::{gqa, nlvr2, synth};
use visprog_distiller::program::ast::{Arg, NamedArg, Program, Step};
use visprog_distiller::program::expr::{self, Val};
use visprog_distiller::program::{interp, parser, run as prun, validate};

use crate::common::{peer, vpd_in};

fn json_of(out: &std::process::Output) -> Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)))
}

#[test]
fn curated_visprog_examples_report_exactly_visprogs_own_defects() {
    let Some(p) = peer() else { return };
    let f = p.join("visprog-curated-examples.jsonl");
    let out = vpd_in(&p, &["program", "check", f.to_str().unwrap(), "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let v = json_of(&out);
    assert_eq!(v["programs"], 32);
    assert_eq!(v["valid"], 29);
    let errs: Vec<(u64, String)> = v["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["index"].as_u64().unwrap(),
                e["kind"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        errs,
        [
            (1, "undefined-variable".to_string()),
            (17, "invalid-expression".to_string()),
            (19, "invalid-expression".to_string())
        ]
    );
    assert!(v["errors"][0]["message"]
        .as_str()
        .unwrap()
        .contains("`ANSWER`"));
    let warns = v["warnings"].as_array().unwrap();
    assert_eq!(warns.len(), 1);
    assert!(warns[0]["message"].as_str().unwrap().contains("`Image`"));
    // The Disney's Frozen question parses as one string.
    let text = std::fs::read_to_string(&f).unwrap();
    let frozen: Value = text
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|v| v["program"].as_str().unwrap().contains("Disney's"))
        .unwrap();
    let prog = parser::parse(frozen["program"].as_str().unwrap()).unwrap();
    let q = prog.steps[0]
        .args
        .iter()
        .find(|a| a.name == "question")
        .unwrap();
    assert_eq!(
        q.value,
        Arg::Str(
            "Does the image have a bag with the characters from Disney's Frozen on it?".into()
        )
    );
}

#[test]
fn the_real_gqa_sample_converts_to_valid_programs() {
    let Some(p) = peer() else { return };
    let f = p.join("gqa-sample/questions/SAMPLE-val_balanced_questions.json");
    let out = vpd_in(
        &p,
        &[
            "program",
            "convert",
            "--gqa-questions",
            f.to_str().unwrap(),
            "--json",
        ],
    );
    assert_eq!(out.status.code(), Some(0));
    let v = json_of(&out);
    assert_eq!(v["questions"], 5);
    assert_eq!(v["valid"], 5);
    for p in v["programs"].as_array().unwrap() {
        let prog = p["program"].as_str().unwrap();
        assert!(prog.ends_with(')') && prog.contains("FINAL_RESULT=RESULT"));
        // Decomposed, not the whole question handed to one VQA step.
        assert!(prog.contains("LOC("), "{prog}");
    }
}

fn synth_dir(dir: &Path, task: &str, n: usize) -> PathBuf {
    let out = dir.join(task);
    let cfg = synth::SynthConfig {
        task: task.parse().unwrap(),
        n,
        seed: 21,
        size: 64,
    };
    synth::write(cfg, &out, &|_, _| {}).unwrap();
    out
}

#[test]
fn converted_synthetic_gqa_programs_run_with_oracle_modules_give_the_written_answer() {
    let d = tempfile::tempdir().unwrap();
    let root = synth_dir(d.path(), "gqa", 250);
    let f = root.join("questions/test_balanced_questions.json");
    let out = vpd_in(
        d.path(),
        &[
            "program",
            "convert",
            "--gqa-questions",
            f.to_str().unwrap(),
            "--oracle",
            "--json",
        ],
    );
    assert_eq!(out.status.code(), Some(0));
    let v = json_of(&out);
    let o = &v["oracle"];
    assert_eq!(o["total"]["n"], 250);
    assert!(
        o["total"]["accuracy"].as_f64().unwrap() >= 98.0,
        "{}",
        o["failures"]
    );
    for op in [
        "select",
        "relate",
        "filter color",
        "filter hposition",
        "query",
        "verify color",
        "verify rel",
        "exist",
        "and",
        "or",
        "choose color",
        "choose rel",
        "same color",
        "different color",
        "common",
    ] {
        assert!(
            o["by_operation"][op]["n"].as_u64().unwrap() > 0,
            "operation {op} covered"
        );
    }
    // Some VQA questions leave the object implicit.
    let programs: Vec<&str> = v["programs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["program"].as_str().unwrap())
        .collect();
    assert!(programs
        .iter()
        .any(|p| p.contains("question='What color is it?'")));
    assert!(programs
        .iter()
        .any(|p| p.contains("question='What color is the ")));
}

#[test]
fn synthetic_nlvr2_programs_with_oracle_modules_give_every_label() {
    let d = tempfile::tempdir().unwrap();
    let root = synth_dir(d.path(), "nlvr2", 140);
    for split in ["train", "test"] {
        let (examples, issues) = nlvr2::load(&root.join(format!("{split}.json"))).unwrap();
        assert!(issues.is_empty());
        let scenes: BTreeMap<String, synth::PairScenes> = serde_json::from_slice(
            &std::fs::read(root.join(format!("{split}_scenes.json"))).unwrap(),
        )
        .unwrap();
        let r = prun::oracle_nlvr2(&examples, &scenes, &root.join("images").join(split));
        assert_eq!(r.total.n, 140);
        assert_eq!(r.total.correct, 140, "{:?}", r.failures);
    }
    let out = vpd_in(
        d.path(),
        &[
            "data",
            "check",
            "--task",
            "nlvr2",
            "--root",
            root.to_str().unwrap(),
            "--oracle",
            "--json",
        ],
    );
    assert_eq!(out.status.code(), Some(0));
    let v = json_of(&out);
    assert_eq!(v["oracle"]["total"]["n"], 560);
    assert_eq!(v["oracle"]["total"]["correct"], 560);
}

fn check_eval(expr: &str, vars: &[(&str, &str)], want: &str) {
    let prog = format!("X=EVAL(expr=\"{expr}\")\nFINAL_RESULT=RESULT(var=X)");
    let free: Vec<(String, validate::Kind)> = vars
        .iter()
        .map(|(k, _)| (k.to_string(), validate::Kind::Any))
        .collect();
    let (p, rep) = validate::check_text_with(&prog, None, &free);
    assert!(rep.errors.is_empty(), "{expr}: {:?}", rep.errors);
    let bound: BTreeMap<String, Val> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), Val::from_text(v)))
        .collect();
    let got = interp::run(&p.unwrap(), &BTreeMap::new(), &bound, None)
        .map(|o| o.result.unwrap().to_answer())
        .map_err(|f| f.error.to_string());
    assert_eq!(got.as_deref(), Ok(want), "{expr} with {vars:?}");
}

#[test]
fn eval_gives_visprogs_answers() {
    check_eval("'yes' if {A} > 0 else 'no'", &[("A", "2")], "yes");
    check_eval("'yes' if {A} > 0 else 'no'", &[("A", "0")], "no");
    check_eval("{A} xor {B}", &[("A", "yes"), ("B", "no")], "yes");
    check_eval("{A} xor {B}", &[("A", "yes"), ("B", "yes")], "no");
    check_eval("{A} + {B} == 1", &[("A", "1"), ("B", "0")], "yes");
    check_eval("{A} + {B} == 1", &[("A", "1"), ("B", "1")], "no");
    check_eval("{A} == 2 and {B} == 2", &[("A", "2"), ("B", "2")], "yes");
    check_eval("{A} >= 7", &[("A", "6")], "no");
    check_eval(
        "'yes' if {A} == 'white' else 'no'",
        &[("A", "white")],
        "yes",
    );
    check_eval(
        "'yes' if {A} != {B} else 'no'",
        &[("A", "red"), ("B", "blue")],
        "yes",
    );
    check_eval("{A} == 1 and {B}", &[("A", "1"), ("B", "yes")], "yes");
    check_eval("{A} / 4", &[("A", "2")], "0.5");
    check_eval(
        "'a' if {A} else 'b' if {B} else 'c'",
        &[("A", "no"), ("B", "yes")],
        "b",
    );
    check_eval("not ({A} < {B} < 3)", &[("A", "1"), ("B", "2")], "no");
    check_eval("-{A} * (2 + 1)", &[("A", "2")], "-6");
    // xor is logical, unlike VisProg's text replacement by `!=`, which would
    // read `A != B == 1` as the chain `A != B and B == 1` (False here).
    check_eval("{A} xor {B} == 1", &[("A", "yes"), ("B", "1")], "no");
    check_eval("{A} xor {B} == 1", &[("A", "no"), ("B", "1")], "yes");
}

#[test]
fn eval_only_programs_run_from_var_bindings_through_the_cli() {
    let d = tempfile::tempdir().unwrap();
    let f = d.path().join("p.txt");
    std::fs::write(
        &f,
        "ANSWER2=EVAL(expr=\"{ANSWER0} + {ANSWER1} == 2\")\nANSWER3=EVAL(expr=\"'yes' if {ANSWER2} xor {ANSWER4} else 'no'\")\nFINAL_ANSWER=RESULT(var=ANSWER3)\n",
    )
    .unwrap();
    let run = |a: &str, b: &str, c: &str| {
        let out = vpd_in(
            d.path(),
            &[
                "program",
                "run",
                "p.txt",
                "--var",
                &format!("ANSWER0={a}"),
                "--var",
                &format!("ANSWER1={b}"),
                "--var",
                &format!("ANSWER4={c}"),
                "--json",
            ],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        json_of(&out)["result"].as_str().unwrap().to_string()
    };
    assert_eq!(run("1", "1", "no"), "yes");
    assert_eq!(run("1", "1", "yes"), "no");
    assert_eq!(run("2", "1", "yes"), "yes");
    // Unbound, the free variable is undefined.
    let out = vpd_in(d.path(), &["program", "run", "p.txt", "--var", "ANSWER0=1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("ANSWER1"));
}

#[test]
fn bad_programs_are_clear_errors_with_line_column_and_kind() {
    let d = tempfile::tempdir().unwrap();
    let cases: &[(&str, &str, usize, usize)] = &[
        (
            "BOX0=LOC(image=IMAGE,object='cat')\nX=FROB(image=IMAGE)\n",
            "unknown-module",
            2,
            3,
        ),
        (
            "BOX0=LOC(image=IMAGE,object='cat')\nN=COUNT(box=BOX9)\n",
            "undefined-variable",
            2,
            13,
        ),
        ("BOX0=LOC(image=IMAGE,object='cat)\n", "syntax", 1, 29),
        (
            "X=EVAL(expr=\"__import__('os')\")\n",
            "invalid-expression",
            1,
            14,
        ),
        ("N=COUNT(box=IMAGE)\n", "type", 1, 13),
        ("BOX0=LOC(image=IMAGE,obj='cat')\n", "bad-argument", 1, 22),
    ];
    for (i, (prog, kind, line, col)) in cases.iter().enumerate() {
        let f = d.path().join(format!("p{i}.txt"));
        std::fs::write(&f, prog).unwrap();
        let out = vpd_in(
            d.path(),
            &["program", "check", f.to_str().unwrap(), "--json"],
        );
        assert_eq!(out.status.code(), Some(1), "{prog}");
        let v = json_of(&out);
        let e = &v["errors"][0];
        assert_eq!(e["kind"], *kind, "{prog}: {e}");
        assert_eq!(
            (
                e["line"].as_u64().unwrap() as usize,
                e["column"].as_u64().unwrap() as usize
            ),
            (*line, *col),
            "{prog}: {e}"
        );
        let out = vpd_in(d.path(), &["program", "run", f.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(1));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(&format!("line {line} column {col}")), "{err}");
    }
    let v = json_of(&vpd_in(
        d.path(),
        &[
            "program",
            "check",
            d.path().join("p3.txt").to_str().unwrap(),
            "--json",
        ],
    ));
    assert!(v["errors"][0]["message"]
        .as_str()
        .unwrap()
        .contains("unknown name `__import__`"));
}

/// A synthetic GQA "What color is the X?" question's converted program,
/// written to `q.txt` in a new folder: the folder, the question, the
/// program and its `--image IMAGE=...` argument.
fn color_question() -> (tempfile::TempDir, gqa::Question, String, String) {
    let d = tempfile::tempdir().unwrap();
    let root = synth_dir(d.path(), "gqa", 15);
    let (qs, _) = gqa::load_questions(&root.join("questions/dev_balanced_questions.json")).unwrap();
    let q = qs
        .iter()
        .find(|q| q.question.starts_with("What color is the ") && !q.question.contains(" on the "))
        .unwrap();
    let prog = visprog_distiller::program::convert::convert(q, false).unwrap();
    std::fs::write(d.path().join("q.txt"), &prog).unwrap();
    let img = root.join(format!("images/{}.png", q.image_id));
    let image_arg = format!("IMAGE={}", img.display());
    (d, q.clone(), prog, image_arg)
}

#[test]
fn program_run_with_oracle_modules_and_an_html_trace() {
    let (d, q, prog, image_arg) = color_question();
    let out = vpd_in(
        d.path(),
        &[
            "program",
            "run",
            "q.txt",
            "--image",
            &image_arg,
            "--modules",
            "oracle",
            "--trace",
            "t.html",
            "--json",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = json_of(&out);
    assert_eq!(v["result"], q.answer.clone().unwrap());
    let steps = v["steps"].as_array().unwrap();
    assert_eq!(steps.len(), prog.lines().count());
    let crop = steps.iter().find(|s| s["module"] == "CROP").unwrap();
    assert_eq!(crop["output"]["kind"], "image");
    assert_eq!(crop["output"]["made_by"], crop["out"]);
    assert!(steps.iter().any(|s| s["module"] == "VQA (oracle)"));
    let html = std::fs::read_to_string(d.path().join("t.html")).unwrap();
    assert!(
        html.contains("data:image/png;base64,") && html.contains("<rect"),
        "images and boxes inline"
    );
    for attr in ["src=\"http", "href=\"http", "url(http"] {
        assert!(!html.contains(attr), "self-contained: no {attr}");
    }
    // Without modules, VQA is a clear step error naming the line.
    let out = vpd_in(
        d.path(),
        &["program", "run", "q.txt", "--image", &image_arg],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("line 1: step BOX0=LOC"));
}

/// Issue 34's one core: a VisProg program's LOC and VQA steps are the same
/// typed module calls as a ViperGPT program's (slot, image rectangle in
/// the source, the visual pointer, text, answer, module): the VQA on the
/// crop of LOC's boxes points at LOC's object and its first box.
#[test]
fn a_visprog_program_records_typed_module_calls_with_their_pointer() {
    let (d, q, _, image_arg) = color_question();
    let out = vpd_in(
        d.path(),
        &[
            "program",
            "run",
            "q.txt",
            "--image",
            &image_arg,
            "--modules",
            "oracle",
            "--json",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = json_of(&out);
    assert_eq!(v["framework"], "visprog");
    let calls = v["calls"].as_array().unwrap();
    let loc = calls.iter().find(|c| c["slot"] == "loc").unwrap();
    let vqa = calls.iter().find(|c| c["slot"] == "vqa").unwrap();
    assert_eq!(loc["method"], "LOC");
    assert_eq!(loc["source"], "IMAGE");
    assert!(loc["pointer"].is_null(), "LOC on the whole image: {loc}");
    assert_eq!(vqa["pointer"]["object"], loc["text"], "{vqa}");
    assert_eq!(vqa["pointer"]["rect"], loc["answer"][0], "{vqa} {loc}");
    assert_eq!(vqa["answer"], q.answer.clone().unwrap());
    assert!(calls.iter().all(|c| c["module"] == "oracle"));
    // The VQA call's image is the crop the CROP step made, in the source.
    let steps = v["steps"].as_array().unwrap();
    let crop = steps.iter().find(|s| s["module"] == "CROP").unwrap();
    assert_eq!(vqa["rect"], crop["output"]["rect"], "{vqa} {crop}");
}

// ---- properties ---------------------------------------------------------

fn ident() -> impl Strategy<Value = String> {
    "[A-Z][A-Z0-9_]{0,6}"
}

fn arg_value() -> impl Strategy<Value = Arg> {
    prop_oneof![
        ident()
            .prop_filter("not a keyword", |s| !["None", "True", "False"]
                .contains(&s.as_str()))
            .prop_map(Arg::Var),
        "[ -~]{0,20}".prop_map(Arg::Str),
        (0u32..1000).prop_map(|n| Arg::Num(n.to_string())),
        Just(Arg::None),
        any::<bool>().prop_map(Arg::Bool),
    ]
}

fn program() -> impl Strategy<Value = Program> {
    proptest::collection::vec(
        (
            ident(),
            ident(),
            proptest::collection::vec(("[a-z][a-z_]{0,5}", arg_value()), 0..4),
        ),
        1..5,
    )
    .prop_map(|steps| Program {
        steps: steps
            .into_iter()
            .enumerate()
            .map(|(i, (out, module, args))| Step {
                line: i + 1,
                out,
                module,
                module_column: 0,
                args: args
                    .into_iter()
                    .map(|(name, value)| NamedArg {
                        name,
                        value,
                        column: 0,
                        value_column: 0,
                    })
                    .collect(),
            })
            .collect(),
    })
}

/// (out, module, [(name, value)]) of each step, positions dropped.
type Bare = Vec<(String, String, Vec<(String, Arg)>)>;

fn strip_positions(p: &Program) -> Bare {
    p.steps
        .iter()
        .map(|s| {
            (
                s.out.clone(),
                s.module.clone(),
                s.args
                    .iter()
                    .map(|a| (a.name.clone(), a.value.clone()))
                    .collect(),
            )
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn parser_and_validator_never_panic(text in "[ -~\n]{0,200}") {
        let _ = validate::check_text(&text, None);
    }

    #[test]
    fn eval_never_panics(expr in "[ -~]{0,80}", a in "[a-z0-9]{0,4}") {
        if let Ok(e) = expr::parse(&expr) {
            let vars = BTreeMap::from([("A".to_string(), Val::from_text(&a))]);
            let _ = e.eval(&vars);
        }
    }

    #[test]
    fn printing_and_parsing_again_gives_the_same_program(p in program()) {
        if let Some(text) = p.to_text() {
            let back = parser::parse(&text).unwrap();
            prop_assert_eq!(strip_positions(&back), strip_positions(&p));
        }
    }
}

/// A program whose one EVAL holds `expr`, checked and run through the CLI.
fn check_and_run_hostile(d: &Path, name: &str, expr: &str) {
    let file = d.join(format!("{name}.txt"));
    std::fs::write(
        &file,
        format!("A=EVAL(expr='{expr}')\nFINAL_RESULT=RESULT(var=A)\n"),
    )
    .unwrap();
    let f = file.to_str().unwrap();
    for cmd in [&["program", "check", f][..], &["program", "run", f][..]] {
        let out = vpd_in(d, cmd);
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.status.code(), Some(1), "{name} {cmd:?}: {all}");
        assert!(
            all.contains("line 1 column ")
                && all.contains("error[invalid-expression]: expression "),
            "{name} {cmd:?}: {}",
            &all[..all.len().min(400)]
        );
    }
}

/// Issue 23: 5000 nested parentheses, a 30,000-term sum and 100,000 `not`s
/// in one EVAL aborted `vpd program check` and `vpd program run` with a
/// stack overflow (exit 134). They are refused with the line and column.
#[test]
fn deep_or_long_eval_expressions_are_refused_not_a_stack_overflow() {
    let d = tempfile::tempdir().unwrap();
    let deep = format!("{}1{}", "(".repeat(5000), ")".repeat(5000));
    check_and_run_hostile(d.path(), "deep", &deep);
    let long = vec!["1"; 30_000].join("+");
    check_and_run_hostile(d.path(), "long", &long);
    let nots = format!("{}True", "not ".repeat(100_000));
    check_and_run_hostile(d.path(), "nots", &nots);
    // Within the limits, deep still works: 90 levels, a 400-term sum.
    let ok = format!("{}1{}", "(".repeat(90), ")".repeat(90));
    assert_eq!(
        expr::parse(&ok).unwrap().eval(&BTreeMap::new()),
        Ok(Val::Num(1.0))
    );
    let sum = vec!["1"; 99].join("+");
    assert_eq!(
        expr::parse(&sum).unwrap().eval(&BTreeMap::new()),
        Ok(Val::Num(99.0))
    );
}

/// Deep and long generated expressions (nesting of parentheses, `not`,
/// unary minus, chains of operators) never crash the parser, the validator
/// or the evaluator: they parse and evaluate, or are refused.
fn hostile_expr() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        Just("1".to_string()),
        Just("{A}".to_string()),
        Just("'yes'".to_string()),
        Just("True".to_string()),
    ];
    (leaf, prop::collection::vec((0usize..6, 1usize..400), 1..6)).prop_map(|(leaf, layers)| {
        let mut e = leaf;
        for (kind, n) in layers {
            e = match kind {
                0 => format!("{}{e}{}", "(".repeat(n), ")".repeat(n)),
                1 => format!("{}{e}", "not ".repeat(n)),
                2 => format!("{}{e}", "-".repeat(n)),
                3 => vec![e.as_str(); n.min(60)].join(" + "),
                4 => format!("{e} if {e} else {e}"),
                _ => vec![e.as_str(); n.min(60)].join(" and "),
            };
            if e.len() > 200_000 {
                break;
            }
        }
        e
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn deep_and_long_expressions_never_crash(expr in hostile_expr(), a in "[a-z0-9]{0,3}") {
        if let Ok(e) = expr::parse(&expr) {
            let vars = BTreeMap::from([("A".to_string(), Val::from_text(&a))]);
            let _ = e.eval(&vars);
        }
        let program = format!("A=EVAL(expr='{expr}')\nFINAL_RESULT=RESULT(var=A)");
        let _ = validate::check_text(&program, None);
    }
}
