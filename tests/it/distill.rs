//! Stepwise distillation: the adapter's rewrites in every pointer mode on
//! fixed traces; a tiny `vpd run` from an empty store (lineage, table,
//! gate); the leakage test; a run killed with SIGKILL.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use image::{Rgb, RgbImage};
use visprog_distiller::data::ImageCache;
use visprog_distiller::distill::adapter::{self, Combine, Pointer};
use visprog_distiller::experiment::Experiment;
use visprog_distiller::nn::text::Answers;
use visprog_distiller::program::interp::{
    self, ImageVal, Perception, PerceptionError, Rect, ScoredBox,
};
use visprog_distiller::program::validate;
use visprog_distiller::runtime::actors::GenerateSource;
use visprog_distiller::runtime::exec::{ExampleOutcome, Job};
use visprog_distiller::vocab::Task;

use crate::common::{tiny_experiment, version, vpd, vpd_in, vpd_json, TINY};

/// LOC finds one fixed box; VQA always says `red`.
struct Fixed;

impl Perception for Fixed {
    fn name(&self, _: &str) -> String {
        "fixed".into()
    }
    fn loc(&mut self, _: &ImageVal, _: &str) -> Result<Vec<ScoredBox>, PerceptionError> {
        Ok(vec![ScoredBox {
            rect: Rect {
                x: 20.0,
                y: 10.0,
                w: 10.0,
                h: 12.0,
            },
            score: 0.9,
        }])
    }
    fn vqa(&mut self, _: &ImageVal, _: &str) -> Result<String, PerceptionError> {
        Ok("red".into())
    }
}

fn write_image(path: &Path, shade: u8) -> PathBuf {
    let mut img = RgbImage::from_pixel(64, 64, Rgb([shade, 0, 0]));
    img.put_pixel(0, 0, Rgb([0, shade, 0]));
    img.save(path).unwrap();
    path.to_path_buf()
}

/// Runs `program` with the fixed modules on `inputs` and returns the job
/// and its outcome with the trace, as the executor records them.
fn traced(task: Task, program: &str, inputs: Vec<(String, PathBuf)>) -> (Job, ExampleOutcome) {
    let (prog, rep) = validate::check_text(program, Some(task));
    assert!(rep.errors.is_empty(), "{:?}", rep.errors);
    let mut vals = BTreeMap::new();
    for (name, p) in &inputs {
        vals.insert(
            name.clone(),
            visprog_distiller::program::run::load_input(name, p).unwrap(),
        );
    }
    let mut fixed = Fixed;
    let out = interp::run(&prog.unwrap(), &vals, &BTreeMap::new(), Some(&mut fixed)).unwrap();
    let job = Job {
        id: "q1".into(),
        kind: "test".into(),
        text: String::new(),
        source: GenerateSource::None,
        inputs,
        scenes: BTreeMap::new(),
        expected: String::new(),
    };
    let outcome = ExampleOutcome {
        id: "q1".into(),
        kind: "test".into(),
        text: String::new(),
        program: Some(program.into()),
        predicted: None,
        expected: String::new(),
        correct: false,
        error: None,
        failed_at: None,
        trace: serde_json::value::to_raw_value(&out.trace).ok(),
    };
    (job, outcome)
}

#[test]
fn adapter_rewrites_gqa_steps_in_every_pointer_mode() {
    let d = tempfile::tempdir().unwrap();
    let img = write_image(&d.path().join("img.png"), 40);
    let (job, outcome) = traced(
        Task::Gqa,
        "BOX0=LOC(image=IMAGE,object='circle')\nIMAGE0=CROP(image=IMAGE,box=BOX0)\nANSWER0=VQA(image=IMAGE0,question='What color is it?')\nANSWER1=VQA(image=IMAGE0,question='Is the circle red?')\nANSWER2=VQA(image=IMAGE,question='What is this?')\nFINAL_RESULT=RESULT(var=ANSWER0)",
        vec![("IMAGE".into(), img)],
    );
    let steps = adapter::steps_of(&job, &outcome);
    assert_eq!(steps.len(), 3);
    let s = &steps[0];
    assert_eq!(s.object.as_deref(), Some("circle"));
    assert_eq!(
        s.object_box,
        Some(Rect {
            x: 20.0,
            y: 10.0,
            w: 10.0,
            h: 12.0
        })
    );
    // CROP enlarged the box 1.5 times: 15 x 18 around its centre.
    assert_eq!(
        (s.rect.x, s.rect.y, s.rect.w, s.rect.h),
        (17.0, 7.0, 16.0, 18.0)
    );
    // The whole image has no pointer: no LOC made it.
    assert_eq!(steps[2].object, None);
    let images = ImageCache::default();
    let mut texts = BTreeMap::new();
    for mode in Pointer::ALL {
        let a: Vec<_> = steps
            .iter()
            .map(|s| {
                adapter::adapt(
                    &adapter::AdapterCfg::default(),
                    Task::Gqa,
                    s,
                    mode,
                    &images,
                    32,
                )
                .unwrap()
                .unwrap()
            })
            .collect();
        for x in &a {
            assert_eq!(x.combine, Combine::Direct);
            assert_eq!(x.queries[0].images[0].len(), 3 * 32 * 32);
        }
        texts.insert(
            mode,
            a.iter()
                .map(|x| (x.queries[0].text.clone(), x.rewritten))
                .collect::<Vec<_>>(),
        );
        // name+box shows the whole source image with the box drawn; the
        // other modes the crop.
        let whole = adapter::adapt(
            &adapter::AdapterCfg::default(),
            Task::Gqa,
            &steps[0],
            mode,
            &images,
            64,
        )
        .unwrap()
        .unwrap();
        let px = &whole.queries[0].images[0];
        let at = |x: usize, y: usize| px[y * 64 + x]; // red channel
        if mode == Pointer::NameBox {
            assert!(at(20, 10) > at(40, 40), "the box's corner is drawn");
            assert!(
                (at(40, 40) - at(50, 50)).abs() < 1e-6,
                "away from the box the image is as it was"
            );
        } else {
            // A 16 x 18 crop resized to 64: a uniform red image.
            assert!((at(20, 10) - at(40, 40)).abs() < 1e-6);
        }
    }
    let implicit = |m: Pointer| texts[&m][0].clone();
    assert_eq!(implicit(Pointer::None), ("What color is it?".into(), false));
    assert_eq!(
        implicit(Pointer::Name),
        ("What color is the circle?".into(), true)
    );
    assert_eq!(
        implicit(Pointer::NameBox),
        ("What color is the circle?".into(), true)
    );
    for m in Pointer::ALL {
        // An explicit question is never rewritten; nor one with no pointer.
        assert_eq!(texts[&m][1], ("Is the circle red?".into(), false));
        assert_eq!(texts[&m][2], ("What is this?".into(), false));
    }
    assert_eq!(
        adapter::name_object("What is this?", "cube").as_deref(),
        Some("What is this cube?")
    );
    assert_eq!(
        adapter::name_object("Is it red or blue?", "cube").as_deref(),
        Some("Is the cube red or blue?")
    );
    assert_eq!(
        adapter::name_object("What color is the cube?", "cube"),
        None
    );
    assert_eq!("name+box".parse::<Pointer>().unwrap(), Pointer::NameBox);
    assert!("box"
        .parse::<Pointer>()
        .unwrap_err()
        .contains("none, name or name+box"));
}

#[test]
fn adapter_turns_nlvr2_steps_into_statements_and_soft_labels() {
    let d = tempfile::tempdir().unwrap();
    let left = write_image(&d.path().join("l.png"), 10);
    let right = write_image(&d.path().join("r.png"), 200);
    let (job, outcome) = traced(
        Task::Nlvr2,
        "ANSWER0=VQA(image=RIGHT,question='How many circles are in the image?')\nANSWER1=VQA(image=LEFT,question='Is there a red cube in the image?')\nANSWER2=EVAL(expr='{ANSWER0} == 2')\nFINAL_ANSWER=RESULT(var=ANSWER2)",
        vec![("LEFT".into(), left), ("RIGHT".into(), right)],
    );
    let steps = adapter::steps_of(&job, &outcome);
    assert_eq!(steps.len(), 2);
    let images = ImageCache::default();
    for mode in Pointer::ALL {
        let count = adapter::adapt(
            &adapter::AdapterCfg::default(),
            Task::Nlvr2,
            &steps[0],
            mode,
            &images,
            16,
        )
        .unwrap()
        .unwrap();
        let texts: Vec<&str> = count.queries.iter().map(|q| q.text.as_str()).collect();
        assert_eq!(
            texts,
            [
                "The right image contains exactly 0 circles.",
                "The right image contains exactly 1 circle.",
                "The right image contains exactly 2 circles.",
                "The right image contains exactly 3 circles.",
                "The right image contains exactly 4 circles.",
            ]
        );
        // The teacher sees the pair, left first.
        assert_eq!(count.queries[0].images.len(), 2);
        assert!(count.queries[0].images[0][0] < count.queries[0].images[1][0]);
        assert!(!count.rewritten);
        let exist = adapter::adapt(
            &adapter::AdapterCfg::default(),
            Task::Nlvr2,
            &steps[1],
            mode,
            &images,
            16,
        )
        .unwrap()
        .unwrap();
        assert_eq!(exist.queries.len(), 1);
        assert_eq!(exist.queries[0].text, "The left image contains a red cube.");
        assert_eq!(exist.combine, Combine::Exists);
    }
    // Soft labels over the student's answers.
    let student = Answers {
        list: ["red", "yes", "no", "0", "1", "2", "3", "4"]
            .map(String::from)
            .to_vec(),
    };
    let teacher = Answers {
        list: vec!["false".into(), "true".into()],
    };
    let t = |p: f32| vec![1.0 - p, p];
    let counts = adapter::soft_label(
        &Combine::Counts(vec![0, 1, 2, 3, 4]),
        &[t(0.1), t(0.1), t(0.6), t(0.1), t(0.1)],
        &teacher,
        &student,
    )
    .unwrap();
    assert_eq!(counts.len(), 8);
    assert!((counts[5] - 0.6).abs() < 1e-6 && counts[0] == 0.0 && counts[1] == 0.0);
    let exists = adapter::soft_label(&Combine::Exists, &[t(0.8)], &teacher, &student).unwrap();
    assert!((exists[1] - 0.8).abs() < 1e-6 && (exists[2] - 0.2).abs() < 1e-6);
    // The GQA teacher's distribution mapped by answer name.
    let gqa_teacher = Answers {
        list: ["4", "red", "purple"].map(String::from).to_vec(),
    };
    let direct = adapter::soft_label(
        &Combine::Direct,
        &[vec![0.25, 0.5, 0.25]],
        &gqa_teacher,
        &student,
    )
    .unwrap();
    assert!((direct[0] - 0.5 / 0.75).abs() < 1e-6 && (direct[7] - 0.25 / 0.75).abs() < 1e-6);
    let _ = Arc::new(());
}

fn run_json(dir: &Path, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["--store", "st", "run", "tiny.toml", "--json"];
    all.extend_from_slice(args);
    vpd_json(dir, &all)
}

fn json(dir: &Path, args: &[&str]) -> serde_json::Value {
    vpd_json(dir, args)
}

/// `vpd run tiny.toml` in `dir` as a child process (to be killed).
fn spawn_run(dir: &Path) -> std::process::Child {
    vpd()
        .current_dir(dir)
        .args(["--store", "st", "-q", "run", "tiny.toml"])
        .spawn()
        .unwrap()
}

#[test]
fn tiny_run_makes_a_version_with_lineage_and_the_gate_guards_the_alias() {
    let d = tempfile::tempdir().unwrap();
    tiny_experiment(d.path(), "tiny.toml", "");
    let r = run_json(d.path(), &[]);
    // Everything was made here: data, students, teacher.
    let made: Vec<&str> = r["pretrained"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(made, ["vqa@1", "loc@1", "gqa-teacher@1"]);
    assert_eq!(r["versions"]["vqa"], "vqa@2");
    for t in ["gqa", "nlvr2"] {
        let row = &r["tasks"][t];
        for k in ["oracle", "base", "distilled"] {
            assert_eq!(row[k]["n"], 40, "{t} {k}: {row}");
        }
        assert_eq!(row["oracle"]["accuracy"], 100.0);
    }
    assert!(r["tasks"]["gqa"]["teacher"]["n"] == 40);
    assert!(r["tasks"]["nlvr2"]["teacher"].is_null());
    let p = &r["pseudo_labels"];
    assert!(p["steps"].as_u64().unwrap() > 0, "{p}");
    for m in ["none", "name", "name+box"] {
        assert!(p["by_mode"][m]["n"].as_u64().unwrap() > 0, "{p}");
    }
    assert_eq!(r["pseudo_label_accuracy"], p["by_mode"]["name"]["accuracy"]);
    assert_eq!(r["gate_passed"], true);
    assert_eq!(r["alias_moved"], true);
    let run_id = r["run_id"].as_str().unwrap().to_string();
    // Lineage: parent, teacher and run.
    let v2 = version(d.path(), "vqa", 2);
    let v1 = version(d.path(), "vqa", 1);
    let teacher = json(
        d.path(),
        &["--store", "st", "versions", "gqa-teacher", "--json"],
    );
    assert_eq!(v2["parent"], v1["id"]);
    assert_eq!(v2["teacher"], teacher[0]["id"]);
    assert_eq!(v2["run"].as_str().unwrap(), run_id);
    let lineage = json(
        d.path(),
        &["--store", "st", "lineage", "vqa@distilled", "--json"],
    );
    assert!(
        lineage.to_string().contains(v1["id"].as_str().unwrap()),
        "{lineage}"
    );
    // The run is recorded as finished with its resolved config.
    let runs = json(d.path(), &["--store", "st", "runs", "--json"]);
    let rec = runs
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["id"] == run_id.as_str())
        .unwrap();
    assert_eq!(rec["status"], "finished");
    assert_eq!(rec["config"]["distill"]["pointer"], "name");
    // Its table is kept with it: `vpd show RUN` prints it again.
    let shown = vpd_in(d.path(), &["--store", "st", "show", &run_id[..13]]);
    assert!(
        shown.status.success(),
        "{}",
        String::from_utf8_lossy(&shown.stderr)
    );
    let text = String::from_utf8_lossy(&shown.stdout);
    assert!(
        text.contains("difference [95% CI]") && text.contains("vqa@2"),
        "{text}"
    );
    // And how every version it used was made (issue 24).
    for needle in [
        "how every version the run used was made",
        "gqa-teacher@1: pre-trained on gqa-n60",
        "vqa@2: distilled from vqa@1 with teacher gqa-teacher@1",
    ] {
        assert!(text.contains(needle), "{needle}: {text}");
    }
    assert!(
        r["recipe_differences"].as_object().unwrap().is_empty(),
        "{r}"
    );
    let shown = json(d.path(), &["--store", "st", "show", &run_id, "--json"]);
    assert_eq!(shown["report"]["tasks"], r["tasks"]);
    assert!(shown["recipes"].as_array().unwrap().len() >= 4, "{shown}");
    // A second run whose candidate does not clear the gate (it would have
    // to gain 100 points on every task): refused, the alias stays on vqa@2.
    // It also asks for a teacher made with another recipe than the one in
    // the store: the stored one is reused, with a warning naming how.
    let r2 = run_json(
        d.path(),
        &[
            "--set",
            "seed=1",
            "--set",
            "gate.max_drop=-100",
            "--set",
            "pretrain.gqa_teacher_n=80",
            "--set",
            "pretrain.gqa_teacher_epochs=3",
        ],
    );
    let diff = r2["recipe_differences"]["gqa-teacher@1"].to_string();
    assert!(
        diff.contains("n 60 (this experiment: 80)")
            && diff.contains("epochs 2 (this experiment: 3)"),
        "{r2}"
    );
    assert_eq!(r2["recipe_differences"].as_object().unwrap().len(), 1);
    assert_eq!(r2["versions"]["vqa"], "vqa@3");
    assert_eq!(r2["gate_passed"], false);
    assert_eq!(r2["alias_moved"], false);
    assert!(
        r2["pretrained"].as_array().unwrap().is_empty(),
        "pre-training is reused"
    );
    let hist = json(
        d.path(),
        &[
            "--store",
            "st",
            "alias",
            "history",
            "vqa",
            "distilled",
            "--json",
        ],
    );
    assert_eq!(hist.as_array().unwrap().len(), 1, "{hist}");
    let now = json(
        d.path(),
        &["--store", "st", "lineage", "vqa@distilled", "--json"],
    );
    assert!(now.to_string().contains(v2["id"].as_str().unwrap()));
    // The table, as a user sees it.
    let out = vpd_in(
        d.path(),
        &["--store", "st", "run", "tiny.toml", "--set", "seed=2"],
    );
    assert!(out.status.success());
    let table = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "teacher",
        "oracle",
        "base",
        "distilled",
        "difference [95% CI]",
        "pseudo-label accuracy",
        "gate vqa (max drop 100 points",
    ] {
        assert!(table.contains(needle), "{needle} missing from:\n{table}");
    }
}

#[test]
fn bad_experiment_keys_are_refused_before_anything_runs() {
    let d = tempfile::tempdir().unwrap();
    let check = |file: &str, sets: &[&str], needle: &str| {
        std::fs::write(d.path().join("e.toml"), file).unwrap();
        let mut args = vec!["--store", "st", "run", "e.toml"];
        for s in sets {
            args.extend(["--set", s]);
        }
        let out = vpd_in(d.path(), &args);
        assert_eq!(out.status.code(), Some(2), "{file} {sets:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{needle:?} not in {err}");
        assert!(
            !d.path().join("st").exists(),
            "nothing ran, no store was made"
        );
    };
    check("[distill]\npointr = \"name\"\n", &[], "pointr");
    check("[distill]\nepochs = \"many\"\n", &[], "epochs");
    check("[distill]\npointer = \"box\"\n", &[], "pointer");
    check("", &["distill.pointr=name"], "distill.pointr");
    check("", &["distill.epochs=many"], "distill.epochs");
    check("", &["distill"], "KEY=VALUE");
    check(
        "[distill]\nmodules = [\"count\"]\n",
        &[],
        "`count` cannot be distilled",
    );
    check(
        "[distill]\ntask = \"nlvr2\"\nmodules = [\"loc\"]\n",
        &[],
        "no LOC steps",
    );
    // --set of a real key works.
    let e = Experiment::parse("", "t")
        .unwrap()
        .with_overrides(&[
            "distill.pointer=name+box".into(),
            "distill.samples=7".into(),
        ])
        .unwrap();
    assert_eq!(e.distill.pointer, Pointer::NameBox);
    assert_eq!(e.distill.samples, 7);
}

/// Replaces every GQA answer of the distill split and rewrites its scene
/// graphs (names, attributes and boxes), keeping both files valid.
fn scramble_gqa_distill(data: &Path) {
    let q = data.join("questions/distill_balanced_questions.json");
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(&q).unwrap()).unwrap();
    for (_, x) in v.as_object_mut().unwrap() {
        x["answer"] = "purple".into();
        x["fullAnswer"] = "It is purple.".into();
    }
    std::fs::write(&q, serde_json::to_vec(&v).unwrap()).unwrap();
    let g = data.join("sceneGraphs/distill_sceneGraphs.json");
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(&g).unwrap()).unwrap();
    for (_, img) in v.as_object_mut().unwrap() {
        for (_, o) in img["objects"].as_object_mut().unwrap() {
            o["name"] = "triangle".into();
            o["attributes"] = serde_json::json!(["purple", "large"]);
            o["x"] = 1.into();
            o["y"] = 1.into();
        }
    }
    std::fs::write(&g, serde_json::to_vec(&v).unwrap()).unwrap();
}

#[test]
fn scrambling_the_distill_splits_truth_leaves_the_checkpoint_bit_identical() {
    let d = tempfile::tempdir().unwrap();
    tiny_experiment(d.path(), "tiny.toml", "");
    let first = run_json(d.path(), &[]);
    let data = std::fs::read_dir(d.path().join("st/data"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("gqa-n60")
        })
        .unwrap();
    scramble_gqa_distill(&data);
    let second = run_json(d.path(), &[]);
    let blob = |n: u64| version(d.path(), "vqa", n)["blob"].clone();
    assert_eq!(first["versions"]["vqa"], "vqa@2");
    assert_eq!(second["versions"]["vqa"], "vqa@3");
    assert_eq!(
        blob(2),
        blob(3),
        "the distilled checkpoint depends on the distill split's truth"
    );
    // The truth was scrambled where it is read, the measurement: the
    // pseudo-labels are now scored against other answers.
    let acc = |r: &serde_json::Value| r["pseudo_labels"]["by_mode"]["name"].clone();
    assert_ne!(acc(&first), acc(&second));
}

#[test]
fn a_run_killed_with_sigkill_shows_interrupted_and_the_next_run_starts_cleanly() {
    let d = tempfile::tempdir().unwrap();
    tiny_experiment(d.path(), "tiny.toml", "");
    let mut child = spawn_run(d.path());
    // Wait until the run is recorded and has started pre-training.
    let t0 = std::time::Instant::now();
    loop {
        assert!(t0.elapsed().as_secs() < 120, "the run never started");
        let out = vpd_in(d.path(), &["--store", "st", "runs", "--json"]);
        let started = out.status.success()
            && serde_json::from_slice::<serde_json::Value>(&out.stdout)
                .is_ok_and(|v| v.as_array().is_some_and(|a| !a.is_empty()));
        if started && d.path().join("st/data").exists() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    std::thread::sleep(std::time::Duration::from_millis(1500));
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let runs = json(d.path(), &["--store", "st", "runs", "--json"]);
    assert_eq!(runs[0]["status"], "interrupted", "{runs}");
    assert_eq!(runs[0]["recorded_status"], "running");
    let verify = vpd_in(d.path(), &["--store", "st", "store", "verify"]);
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stdout)
    );
    let out = vpd_in(d.path(), &["--store", "st", "runs"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("interrupted"));
    // The same experiment again finishes.
    let r = run_json(d.path(), &[]);
    assert_eq!(r["gate_passed"], true);
    let runs = json(d.path(), &["--store", "st", "runs", "--json"]);
    assert_eq!(runs.as_array().unwrap().len(), 2);
    assert_eq!(runs[1]["status"], "finished");
}

#[test]
fn tiny_run_distils_loc_through_teacher_verification() {
    let d = tempfile::tempdir().unwrap();
    tiny_experiment(d.path(), "tiny.toml", "");
    // A tiny teacher's verdicts are near chance: accept every candidate,
    // so that there is something to train on.
    let r = run_json(
        d.path(),
        &[
            "--set",
            "distill.modules=[\"vqa\", \"loc\"]",
            "--set",
            "distill.loc_accept=0.0",
        ],
    );
    assert_eq!(r["versions"]["vqa"], "vqa@2");
    assert_eq!(r["versions"]["loc"], "loc@2");
    assert_eq!(r["versions"]["loc_parent"], "loc@1");
    let p = &r["loc_pseudo_boxes"];
    assert!(p["steps"].as_u64().unwrap() > 0, "{p}");
    assert!(p["candidates"].as_u64().unwrap() > 0, "{p}");
    assert_eq!(p["candidates"], p["accepted"], "accept 0.0 accepts all");
    // Each module has its own gate, over every pair of pipelines that
    // differ only in it (with the other module's parent and its new
    // version), on both tasks.
    for m in ["vqa", "loc"] {
        let g = &r["gates"][m];
        let rows = g["rows"].as_array().unwrap();
        assert_eq!(rows.len(), 4, "{g}");
        for t in ["gqa", "nlvr2"] {
            assert_eq!(rows.iter().filter(|x| x["task"] == t).count(), 2, "{g}");
        }
    }
    let v2 = version(d.path(), "loc", 2);
    assert_eq!(v2["run"], r["run_id"]);
    assert!(v2["teacher"].is_string());
}

#[test]
fn bad_sweep_tables_are_refused_before_any_trial() {
    let d = tempfile::tempdir().unwrap();
    for (table, needle) in [
        (
            "[sweep]\n\"distill.pointr\" = [\"name\"]\n",
            "distill.pointr",
        ),
        ("[sweep]\nseed = []\n", "`seed` has an empty list"),
        (
            "[sweep]\n\"distill.epochs\" = [1, \"x\"]\n",
            "distill.epochs",
        ),
    ] {
        tiny_experiment(d.path(), "e.toml", table);
        let out = vpd_in(d.path(), &["--store", "st", "run", "e.toml"]);
        assert_eq!(out.status.code(), Some(2), "{table}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{needle:?} not in {err}");
        assert!(!d.path().join("st").exists(), "no trial started");
    }
    let e = Experiment::parse(
        &format!("{TINY}\n[sweep]\nseed = [0, 1]\n\"distill.pointer\" = [\"none\", \"name\", \"name+box\"]\n"),
        "t",
    )
    .unwrap();
    let trials = e.trials().unwrap();
    assert_eq!(trials.len(), 6);
    assert!(trials.iter().all(|(_, t)| t.sweep.is_empty()));
    assert_eq!(trials[5].1.seed, 1);
    assert_eq!(trials[5].1.distill.pointer, Pointer::NameBox);
}

#[test]
fn a_sweep_killed_with_sigkill_resumes_with_its_finished_trials_untouched() {
    let d = tempfile::tempdir().unwrap();
    tiny_experiment(d.path(), "tiny.toml", "[sweep]\nseed = [0, 1, 2]\n");
    let mut child = spawn_run(d.path());
    // Kill it once the first trial has finished and the second is running.
    let t0 = std::time::Instant::now();
    let finished_first = loop {
        assert!(
            t0.elapsed().as_secs() < 300,
            "the first trial never finished"
        );
        if let Ok(Some(_)) = child.try_wait() {
            panic!("the sweep ended before it was killed");
        }
        let out = vpd_in(d.path(), &["--store", "st", "runs", "--json"]);
        if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&out.stdout) {
            let runs = v.as_array().cloned().unwrap_or_default();
            // The first trial finished and a later one running (a slow
            // poll may see the second finished too: that is fine).
            if runs.len() >= 2
                && runs[0]["status"] == "finished"
                && runs.last().is_some_and(|r| r["status"] == "running")
            {
                break runs[0].clone();
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    std::thread::sleep(std::time::Duration::from_millis(500));
    child.kill().unwrap();
    child.wait().unwrap();
    let runs = json(d.path(), &["--store", "st", "runs", "--json"]);
    let runs_now = runs.as_array().unwrap();
    let done = runs_now
        .iter()
        .filter(|r| r["status"] == "finished")
        .count();
    assert_eq!(
        runs_now
            .iter()
            .filter(|r| r["status"] == "interrupted")
            .count(),
        1,
        "{runs}"
    );
    assert_eq!(runs_now.last().unwrap()["status"], "interrupted", "{runs}");
    // Again: the finished trial is skipped, the others run.
    let out = vpd_in(d.path(), &["--store", "st", "run", "tiny.toml", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s["skipped"], done, "{s}");
    assert_eq!(s["ran"], 3 - done);
    let configs = s["configurations"].as_array().unwrap();
    assert_eq!(configs.len(), 1, "seeds make one configuration");
    let trials = configs[0]["trials"].as_array().unwrap();
    assert_eq!(trials.len(), 3);
    assert_eq!(trials[0]["run_id"], finished_first["id"]);
    assert_eq!(trials[0]["reused"], true);
    assert_eq!(configs[0]["tasks"]["gqa"]["distilled"]["trials"], 3);
    let runs = json(d.path(), &["--store", "st", "runs", "--json"]);
    let runs = runs.as_array().unwrap();
    assert_eq!(runs.len(), 4, "three trials and the interrupted one");
    assert_eq!(
        runs[0], finished_first,
        "the finished trial's record is unchanged"
    );
    assert_eq!(runs.iter().filter(|r| r["status"] == "finished").count(), 3);
    assert!(runs.iter().all(|r| r["sweep"] == s["sweep_id"]));
    // A third time: nothing to run.
    let again = vpd_in(d.path(), &["--store", "st", "run", "tiny.toml", "--json"]);
    let again: serde_json::Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(
        (again["ran"].as_u64(), again["skipped"].as_u64()),
        (Some(0), Some(3))
    );
    // `--from` reruns one trial's resolved configuration as a lone run.
    let from = vpd_in(
        d.path(),
        &[
            "--store",
            "st",
            "run",
            "--from",
            runs[0]["id"].as_str().unwrap(),
            "--json",
        ],
    );
    assert!(
        from.status.success(),
        "{}",
        String::from_utf8_lossy(&from.stderr)
    );
    let from: serde_json::Value = serde_json::from_slice(&from.stdout).unwrap();
    assert_eq!(from["seed"], 0);
}

#[test]
fn anchors_keep_the_student_close_to_its_parent_on_them() {
    use visprog_distiller::nn::fit::{distill, DistillConfig, Keep, SoftExample};
    use visprog_distiller::nn::model::{Example, Model};
    use visprog_distiller::nn::DeviceChoice;
    let meta = visprog_distiller::models::student_meta();
    let side = meta.film.image_size as usize;
    let classes = meta.answers.list.len();
    let image = |k: usize| {
        Arc::new(
            (0..3 * side * side)
                .map(|i| (((i * 7 + k * 13) % 17) as f32 / 8.0) - 1.0)
                .collect::<Vec<f32>>(),
        )
    };
    let mut target = vec![0.0; classes];
    target[0] = 1.0;
    let train: Vec<SoftExample> = (0..48)
        .map(|k| SoftExample {
            images: vec![image(k)],
            text: "what color is the circle".into(),
            target: target.clone(),
        })
        .collect();
    let anchor: Vec<Example> = (100..148)
        .map(|k| Example {
            images: vec![image(k)],
            text: "how many squares are in the image".into(),
            label: 0,
        })
        .collect();
    let cfg = DistillConfig {
        epochs: 4,
        batch: 16,
        lr: 5e-3,
        temperature: 1.0,
        ce_weight: 0.0,
        replay_weight: 0.0,
        self_distill_weight: 1.0,
        patience: 10,
        seed: 0,
    };
    let parent = Model::new(meta.clone(), DeviceChoice::Cpu, 3).unwrap();
    let bytes = parent.to_bytes().unwrap();
    let drift = |keep: Keep| {
        let mut s = Model::from_bytes(&bytes, DeviceChoice::Cpu).unwrap();
        distill(
            &mut s,
            Some(&parent),
            &train,
            &[],
            &keep,
            &cfg,
            &|_, _, _| {},
        )
        .unwrap();
        let (p, q) = (
            parent.predict(&anchor).unwrap(),
            s.predict(&anchor).unwrap(),
        );
        // Mean KL(parent || student) on the anchors.
        p.iter()
            .zip(&q)
            .map(|(p, q)| {
                p.iter()
                    .zip(q)
                    .map(|(a, b)| a * ((a + 1e-8) / (b + 1e-8)).ln())
                    .sum::<f32>()
            })
            .sum::<f32>()
            / anchor.len() as f32
    };
    let free = drift(Keep::default());
    let kept = drift(Keep {
        replay: &[],
        anchor: &anchor,
    });
    assert!(
        free > 0.05,
        "training moved the student on the anchors: {free}"
    );
    assert!(kept < 0.5 * free, "anchored {kept} vs free {free}");
}

/// Issue 17: `eval.tasks = ["gqa", "gqa"]` ran data and pre-training, then
/// failed with "Mailbox has closed" (a panic in the coordinator) and left an
/// orphan version. It is refused before anything runs, naming the task.
#[test]
fn duplicate_eval_tasks_are_refused_before_anything_runs() {
    let d = tempfile::tempdir().unwrap();
    for (file, needle) in [
        (
            "[eval]\ntasks = [\"gqa\", \"gqa\"]\n",
            "`eval.tasks` names gqa twice",
        ),
        (
            "[distill]\nmodules = [\"vqa\", \"vqa\"]\n",
            "`distill.modules` names vqa twice",
        ),
    ] {
        std::fs::write(d.path().join("e.toml"), file).unwrap();
        let t = std::time::Instant::now();
        let out = vpd_in(d.path(), &["--store", "st", "run", "e.toml"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{file}: {err}");
        assert!(err.contains(needle), "{needle:?} not in {err}");
        assert!(!err.contains("Mailbox"), "{err}");
        assert!(!d.path().join("st").exists(), "nothing ran, no store made");
        assert!(t.elapsed().as_secs() < 30, "refused at once");
    }
}

/// Issue 19: the adapters' words come from the experiment's `[adapter]`
/// table: counting and existence rules, the count range and plurals of
/// another world; a question no rule covers stays unlabelled.
#[test]
fn the_adapter_speaks_the_words_of_the_experiments_adapter_table() {
    let d = tempfile::tempdir().unwrap();
    let left = write_image(&d.path().join("l.png"), 10);
    let right = write_image(&d.path().join("r.png"), 200);
    let (job, outcome) = traced(
        Task::Nlvr2,
        "ANSWER0=VQA(image=LEFT,question='How many mice do you see?')\nANSWER1=VQA(image=RIGHT,question='Can you see a dog?')\nANSWER2=VQA(image=RIGHT,question='Is there a red cube in the image?')\nANSWER3=EVAL(expr='{ANSWER0} == 2')\nFINAL_ANSWER=RESULT(var=ANSWER3)",
        vec![("LEFT".into(), left), ("RIGHT".into(), right)],
    );
    let steps = adapter::steps_of(&job, &outcome);
    assert_eq!(steps.len(), 3);
    let exp = Experiment::parse(
        r#"
[adapter]
verify = "Do you see {object} here?"
verify_with = []
count = [["how many {noun} do you see", "In the {side} photo there are exactly {k} {noun}."]]
counts = [1, 3]
exists = [["can you see {what}", "The {side} photo shows {what}."]]
plurals = { mice = "mouse" }
"#,
        "adapter.toml",
    )
    .unwrap();
    let cfg = &exp.adapter;
    let images = ImageCache::default();
    let count = adapter::adapt(cfg, Task::Nlvr2, &steps[0], Pointer::Name, &images, 16)
        .unwrap()
        .unwrap();
    let texts: Vec<&str> = count.queries.iter().map(|q| q.text.as_str()).collect();
    assert_eq!(
        texts,
        [
            "In the left photo there are exactly 1 mouse.",
            "In the left photo there are exactly 2 mice.",
            "In the left photo there are exactly 3 mice.",
        ]
    );
    assert_eq!(count.combine, Combine::Counts(vec![1, 2, 3]));
    let exists = adapter::adapt(cfg, Task::Nlvr2, &steps[1], Pointer::Name, &images, 16)
        .unwrap()
        .unwrap();
    assert_eq!(exists.queries[0].text, "The right photo shows a dog.");
    // The default wording is not this experiment's: unlabelled, not guessed.
    assert!(
        adapter::adapt(cfg, Task::Nlvr2, &steps[2], Pointer::Name, &images, 16)
            .unwrap()
            .is_none()
    );
    // The LOC verification question, with no attribute words: the name alone.
    let crop = image::RgbImage::new(8, 8);
    let q = adapter::verification_queries(cfg, "white mouse", &crop, 16);
    assert_eq!(q.len(), 1);
    assert_eq!(q[0].text, "Do you see white mouse here?");
    // The default table asks once per colour when the name has none.
    let q = adapter::verification_queries(&Default::default(), "circle", &crop, 16);
    assert_eq!(q.len(), visprog_distiller::data::world::COLORS.len());
    assert_eq!(
        q[0].text,
        format!(
            "Is there a {} circle?",
            visprog_distiller::data::world::COLORS[0]
        )
    );
    // A bad table is refused naming its key; the default leaves the
    // experiment's identity (and so a sweep's id) as it was.
    for (set, says) in [
        ("adapter.counts=[3, 1]", "`adapter.counts`"),
        ("adapter.verify='Is it there?'", "`adapter.verify`"),
    ] {
        let err = Experiment::default()
            .with_overrides(&[set.to_string()])
            .unwrap_err()
            .to_string();
        assert!(err.contains(says), "{set}: {err}");
    }
    let plain = serde_json::to_value(Experiment::default()).unwrap();
    assert!(Experiment::identity(&plain).get("adapter").is_none());
    assert!(Experiment::identity(&serde_json::to_value(&exp).unwrap())
        .get("adapter")
        .is_some());
}

/// A sweep's id hashes what the experiment is, not where it runs nor a
/// default `[adapter]` table added later: the two shipped sweeps keep the
/// ids their stores know them by (docs/results.md), whatever `device`.
#[test]
fn the_shipped_sweeps_keep_their_ids() {
    use visprog_distiller::experiment::sweep::sweep_id;
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("experiments");
    for (file, id) in [
        ("ablation-pointer.toml", "e9ea741b"),
        ("size-curve.toml", "f9313753"),
    ] {
        let e = Experiment::load(&root.join(file)).unwrap();
        assert!(
            sweep_id(&e).to_string().starts_with(id),
            "{file}: {}",
            sweep_id(&e)
        );
        let gpu = e.with_overrides(&["device=cuda:1".to_string()]).unwrap();
        assert_eq!(sweep_id(&gpu), sweep_id(&e));
        let other = e
            .with_overrides(&["adapter.counts=[0, 5]".to_string()])
            .unwrap();
        assert_ne!(sweep_id(&other), sweep_id(&e));
    }
}
