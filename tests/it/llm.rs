//! The `llm` generator against a local HTTP server that answers like an
//! OpenAI-compatible endpoint: slow, malformed, error and good answers.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use visprog_distiller::program::llm::{self, LlmConfig, LlmError};
use visprog_distiller::store::Store;
use visprog_distiller::vocab::Task;

#[derive(Clone)]
pub(crate) enum Reply {
    Slow(Duration),
    Status(u16, &'static str),
    Body(String),
}

pub(crate) fn completion(content: &str) -> String {
    serde_json::json!({"choices": [{"message": {"role": "assistant", "content": content}}]})
        .to_string()
}

/// Serves the scripted replies in order (the last one repeats) on
/// 127.0.0.1; returns the base URL and the request bodies it saw.
pub(crate) fn serve(replies: Vec<Reply>) -> (String, Arc<Mutex<Vec<String>>>) {
    serve_on(TcpListener::bind("127.0.0.1:0").unwrap(), replies)
}

/// As `serve`, on a listener the caller bound.
fn serve_on(listener: TcpListener, replies: Vec<Reply>) -> (String, Arc<Mutex<Vec<String>>>) {
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for (i, conn) in listener.incoming().enumerate().take(200) {
            let Ok(mut s) = conn else { return };
            let mut r = BufReader::new(s.try_clone().unwrap());
            let mut len = 0;
            let mut line = String::new();
            while r.read_line(&mut line).unwrap_or(0) > 0 && line != "\r\n" {
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
                line.clear();
            }
            let mut body = vec![0; len];
            let _ = r.read_exact(&mut body);
            log.lock()
                .unwrap()
                .push(String::from_utf8_lossy(&body).into_owned());
            let reply = replies[i.min(replies.len() - 1)].clone();
            let (status, text) = match reply {
                Reply::Slow(d) => {
                    std::thread::sleep(d);
                    (200, completion("too late"))
                }
                Reply::Status(c, t) => (c, t.to_string()),
                Reply::Body(b) => (200, b),
            };
            let _ = write!(
                s,
                "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
                text.len()
            );
        }
    });
    (url, seen)
}

fn cfg(url: &str, retries: u32) -> LlmConfig {
    LlmConfig {
        base_url: url.into(),
        model: "test-model".into(),
        api_key: Some("k".into()),
        timeout: Duration::from_millis(400),
        retries,
        backoff: Duration::from_millis(10),
        max_tokens: 256,
        retry_invalid: false,
        prompt: None,
    }
}

const GOOD: &str = "Here is the program:\n```\nANSWER0=VQA(image=LEFT,question='How many circles are in the image?')\nANSWER1=EVAL(expr='{ANSWER0} == 2')\nFINAL_ANSWER=RESULT(var=ANSWER1)\n```";

#[test]
fn slow_malformed_error_and_invalid_answers_are_retried_until_a_valid_program() {
    let (url, seen) = serve(vec![
        Reply::Slow(Duration::from_millis(900)),
        Reply::Body("{not json".into()),
        Reply::Status(500, "{\"error\": \"overloaded\"}"),
        Reply::Body(completion(
            "ANSWER0=VQA(image=LEFT,question='How many?')\nFINAL_ANSWER=RESULT(var=ANSWER9)",
        )),
        Reply::Body(completion(GOOD)),
    ]);
    let g = llm::generate(
        &cfg(&url, 5),
        Task::Nlvr2,
        "The left image contains exactly 2 circles.",
    )
    .unwrap();
    assert_eq!(g.attempts, 5);
    assert!(g.program.starts_with("ANSWER0=VQA(image=LEFT"));
    assert!(g.program.ends_with("FINAL_ANSWER=RESULT(var=ANSWER1)"));
    // The prompt is few-shot, with the statement last.
    let body: serde_json::Value = serde_json::from_str(&seen.lock().unwrap()[4]).unwrap();
    assert_eq!(body["model"], "test-model");
    let user = body["messages"][1]["content"].as_str().unwrap();
    assert!(user.contains("Statement: There is a red square in one image."));
    assert!(user.ends_with("Statement: The left image contains exactly 2 circles.\nProgram:"));
}

#[test]
fn an_invalid_answer_is_retried_then_recorded_as_a_failure() {
    let (url, seen) = serve(vec![Reply::Body(completion("I cannot help with that."))]);
    let err = llm::generate(&cfg(&url, 2), Task::Gqa, "What color is the ring?").unwrap_err();
    match &err {
        LlmError::GaveUp { attempts, last } => {
            assert_eq!(*attempts, 3);
            assert!(matches!(**last, LlmError::InvalidProgram(_)), "{last}");
        }
        other => panic!("{other}"),
    }
    // Cached in the store: a second ask does not reach the endpoint.
    let d = tempfile::tempdir().unwrap();
    let store = Store::open(d.path().join("store")).unwrap();
    let c = cfg(&url, 0);
    let first = llm::generate_cached(&store, &c, Task::Gqa, "What color is the ring?").unwrap();
    assert!(first.unwrap_err().contains("invalid"));
    let asked = seen.lock().unwrap().len();
    let again = llm::generate_cached(&store, &c, Task::Gqa, "What color is the ring?").unwrap();
    assert!(again.is_err());
    assert_eq!(seen.lock().unwrap().len(), asked, "answered from the cache");
}

#[test]
fn a_client_error_is_not_retried_and_names_the_status() {
    let (url, seen) = serve(vec![Reply::Status(401, "{\"error\": \"bad key\"}")]);
    let err = llm::generate(&cfg(&url, 3), Task::Gqa, "Is there a ring?").unwrap_err();
    assert!(matches!(err, LlmError::Status { status: 401, .. }), "{err}");
    assert!(err.to_string().contains("HTTP 401") && err.to_string().contains(&url));
    assert_eq!(seen.lock().unwrap().len(), 1);
}

#[test]
fn an_unreachable_endpoint_is_a_clear_error() {
    // A port nothing listens on: bind, read the port, close.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}/v1");
    let err = llm::generate(&cfg(&url, 1), Task::Gqa, "Is there a ring?").unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("unreachable") && msg.contains(&port.to_string()),
        "{msg}"
    );
}

#[test]
fn the_shipped_in_context_examples_are_valid_programs() {
    for (prompt, task, label) in [
        (llm::GQA_PROMPT, Task::Gqa, "Question:"),
        (llm::NLVR2_PROMPT, Task::Nlvr2, "Statement:"),
    ] {
        let mut n = 0;
        for block in prompt.split(label).skip(1) {
            let program = block.split_once("Program:\n").unwrap().1.trim();
            let (_, rep) = visprog_distiller::program::validate::check_text(program, Some(task));
            assert!(
                rep.errors.is_empty() && rep.warnings.is_empty(),
                "{program}: {:?}",
                rep.errors
            );
            n += 1;
        }
        assert!(n >= 5);
    }
}

#[test]
fn vpd_eval_runs_programs_the_llm_writes_and_caches_them() {
    let (url, seen) = serve(vec![Reply::Body(completion(GOOD))]);
    let d = tempfile::tempdir().unwrap();
    let run = || {
        crate::common::vpd()
            .current_dir(d.path())
            .env("VPD_LLM_BASE_URL", &url)
            .env("VPD_LLM_MODEL", "test-model")
            .args(["--store", "st", "eval", "--task", "nlvr2", "--n", "30"])
            .args([
                "--modules",
                "oracle",
                "--generator",
                "llm",
                "--limit",
                "6",
                "--json",
                "--force",
            ])
            .output()
            .unwrap()
    };
    let out = run();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // The evaluation is keyed by endpoint, model, prompt and sampling
    // (issue 23: the model name alone let two endpoints share a score).
    let generator = j["evaluation"]["pipeline"]["generator"].as_str().unwrap();
    assert!(
        generator.starts_with(&format!("llm:test-model@{url}:prompt-"))
            && generator.ends_with(":t0:max512"),
        "{generator}"
    );
    assert_eq!(j["score"]["n"], 6);
    assert_eq!(j["failed_steps"], 0, "{j}");
    let asked = seen.lock().unwrap().len();
    assert!((1..=6).contains(&asked), "{asked} requests");
    // Run again: every program comes from the store's cache.
    let again = run();
    assert!(again.status.success());
    assert_eq!(seen.lock().unwrap().len(), asked, "no new requests");
}

#[test]
fn vpd_eval_with_an_unreachable_endpoint_fails_naming_it() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let d = tempfile::tempdir().unwrap();
    let out = crate::common::vpd()
        .current_dir(d.path())
        .env("VPD_LLM_BASE_URL", format!("http://127.0.0.1:{port}/v1"))
        .env("VPD_LLM_RETRIES", "0")
        .env("VPD_LLM_TIMEOUT_S", "2")
        .args(["--store", "st", "eval", "--task", "nlvr2", "--n", "30"])
        .args(["--modules", "oracle", "--generator", "llm", "--limit", "3"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("program generator failed on all 3 examples")
            && err.contains(&port.to_string()),
        "{err}"
    );
    let st = visprog_distiller::store::Store::open(d.path().join("st")).unwrap();
    assert!(st.evaluations().unwrap().is_empty(), "nothing recorded");
}

/// `vpd eval --generator llm` on the test set of a fresh store, with oracle
/// modules, against `url`.
fn llm_eval(d: &std::path::Path, url: &str, extra: &[&str]) -> std::process::Output {
    crate::common::vpd()
        .current_dir(d)
        .env("VPD_LLM_BASE_URL", url)
        .env("VPD_LLM_MODEL", "test-model")
        .env("VPD_LLM_RETRIES", "0")
        .env("VPD_LLM_TIMEOUT_S", "2")
        .args(["--store", "st", "eval", "--task", "nlvr2", "--n", "30"])
        .args(["--modules", "oracle", "--generator", "llm", "--limit", "3"])
        .args(extra)
        .output()
        .unwrap()
}

/// Issue 23: with the endpoint down, the failure was cached as the answer,
/// and the next run (with or without --force) never asked again.
#[test]
fn a_failure_to_reach_the_endpoint_is_never_cached() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let url = format!("http://{addr}/v1");
    let d = tempfile::tempdir().unwrap();
    let down = llm_eval(d.path(), &url, &[]);
    assert_eq!(down.status.code(), Some(1));
    // The server comes up on the same port: the next run asks it.
    let (_, seen) = serve_on(
        TcpListener::bind(addr).unwrap(),
        vec![Reply::Body(completion(GOOD))],
    );
    let up = llm_eval(d.path(), &url, &["--json"]);
    assert!(
        up.status.success(),
        "{}",
        String::from_utf8_lossy(&up.stderr)
    );
    assert!(!seen.lock().unwrap().is_empty(), "the endpoint was asked");
}

/// Issue 23: an invalid program is an answer, cached with its reason; a
/// run without --force reuses it, --force asks again.
#[test]
fn an_invalid_program_is_cached_with_its_reason_and_asked_again_under_force() {
    let (url, seen) = serve(vec![Reply::Body(completion("I cannot write programs."))]);
    let d = tempfile::tempdir().unwrap();
    let first = llm_eval(d.path(), &url, &[]);
    assert_eq!(first.status.code(), Some(1));
    let asked = seen.lock().unwrap().len();
    assert!(asked >= 1);
    let err = String::from_utf8_lossy(&first.stderr);
    assert!(err.contains("invalid"), "{err}");
    let again = llm_eval(d.path(), &url, &[]);
    assert_eq!(again.status.code(), Some(1));
    assert_eq!(seen.lock().unwrap().len(), asked, "cached: not asked again");
    let forced = llm_eval(d.path(), &url, &["--force"]);
    assert_eq!(forced.status.code(), Some(1));
    assert!(seen.lock().unwrap().len() > asked, "--force asked again");
}

/// Issue 23: two endpoints serving the same model name shared one stored
/// evaluation, so the second reported the first one's score.
#[test]
fn two_endpoints_serving_one_model_name_do_not_share_an_evaluation() {
    let (a, _) = serve(vec![Reply::Body(completion(GOOD))]);
    let (b, seen_b) = serve(vec![Reply::Body(completion(GOOD))]);
    let d = tempfile::tempdir().unwrap();
    let json = |url: &str| -> serde_json::Value {
        let out = llm_eval(d.path(), url, &["--json"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let ja = json(&a);
    let jb = json(&b);
    assert_eq!(jb["reused"], false, "B's run is its own");
    assert_ne!(ja["evaluation"]["id"], jb["evaluation"]["id"]);
    assert!(!seen_b.lock().unwrap().is_empty(), "B was asked");
}

/// Issue 23: in `vpd eval` a 1000-level expression (about 2 KB) in an LLM
/// answer aborted the whole evaluation with a stack overflow. It is an
/// invalid program like any other.
#[test]
fn a_deeply_nested_expression_from_the_llm_is_an_invalid_program_not_an_abort() {
    let deep = format!("{}1{}", "(".repeat(1000), ")".repeat(1000));
    let answer = format!("```\nANSWER0=EVAL(expr='{deep}')\nFINAL_ANSWER=RESULT(var=ANSWER0)\n```");
    let (url, _) = serve(vec![Reply::Body(completion(&answer))]);
    let d = tempfile::tempdir().unwrap();
    let out = llm_eval(d.path(), &url, &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("nested too deeply") || err.contains("too long"),
        "{err}"
    );
}

/// An NLVR2 folder in the real layout (`vpd data synth --layout real`):
/// lines without `program`, the train images spread over numbered
/// folders, every third pair JPEG bytes under its `.png` name (as some
/// real ones are).
fn real_nlvr2(dir: &std::path::Path) -> std::path::PathBuf {
    let real = dir.join("nlvr2");
    crate::common::vpd_json(
        dir,
        &[
            "data",
            "synth",
            "--task",
            "nlvr2",
            "--layout",
            "real",
            "--out",
            real.to_str().unwrap(),
            "--n",
            "8",
            "--width",
            "80",
            "--height",
            "60",
            "--json",
        ],
    );
    real
}

#[test]
fn a_real_layout_nlvr2_folder_is_evaluated_with_programs_the_llm_writes() {
    let (url, seen) = serve(vec![Reply::Body(completion(GOOD))]);
    let d = tempfile::tempdir().unwrap();
    let real = real_nlvr2(d.path());
    let data = real.to_str().unwrap();
    let args = [
        "--store", "st", "eval", "--task", "nlvr2", "--data", data, "--split", "dev",
    ];
    // Real lines carry no programs: the annotated generator is one clear error.
    let out = crate::common::vpd_in(d.path(), &[&args[..], &["--modules", "oracle"]].concat());
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("carry no `program`") && err.contains("--generator llm"),
        "{err}"
    );
    // With the llm generator, against oracle-free modules: every statement
    // is run on its pair (found in the numbered folders, JPEG sniffed).
    let out = crate::common::vpd()
        .current_dir(d.path())
        .env("VPD_LLM_BASE_URL", &url)
        .env("VPD_LLM_MODEL", "test-model")
        .args(args)
        .args([
            "--modules",
            "VQA=oracle",
            "LOC=oracle",
            "--generator",
            "llm",
            "--json",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "no scene graphs for oracle modules: {err}"
    );
    assert!(err.contains("has none"), "{err}");
    let st = d.path().join("st");
    let students = crate::common::vpd_in(
        d.path(),
        &[
            "--store",
            st.to_str().unwrap(),
            "pretrain",
            "students",
            "--n",
            "40",
            "--epochs",
            "1",
        ],
    );
    assert!(
        students.status.success(),
        "{}",
        String::from_utf8_lossy(&students.stderr)
    );
    let out = crate::common::vpd()
        .current_dir(d.path())
        .env("VPD_LLM_BASE_URL", &url)
        .env("VPD_LLM_MODEL", "test-model")
        .args(args)
        .args(["--generator", "llm", "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let n = std::fs::read_to_string(real.join("dev.json"))
        .unwrap()
        .lines()
        .count();
    assert_eq!(j["score"]["n"], n as u64, "{j}");
    assert_eq!(j["failed_steps"], 0, "every image found and decoded: {j}");
    assert!(j["program_errors"].is_null(), "{j}");
    assert!(!seen.lock().unwrap().is_empty());
}

/// `vpd run` distilling on an NLVR2 folder in the real layout
/// (`vpd data synth --layout real`: lines without programs): the
/// experiment names the llm generator and a prompt file of its own, the
/// NLVR2 teacher is pre-trained on the real train role, and the programs
/// of every role come from the endpoint with that prompt.
#[test]
fn a_run_on_real_nlvr2_takes_its_programs_from_the_llm_with_the_experiments_prompt() {
    let (url, seen) = serve(vec![Reply::Body(completion(GOOD))]);
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    let real = real_nlvr2(p);
    crate::common::vpd_json(
        p,
        &[
            "--store", "st", "pretrain", "students", "--n", "40", "--epochs", "1", "--json",
        ],
    );
    std::fs::write(
        p.join("my.prompt"),
        "Statement: There is a circle in the left image.\nProgram:\nANSWER0=VQA(image=LEFT,question='How many circles are in the image?')\nANSWER1=EVAL(expr='{ANSWER0} > 0')\nFINAL_ANSWER=RESULT(var=ANSWER1)\n# my own prompt\n",
    )
    .unwrap();
    std::fs::write(
        p.join("real.toml"),
        format!(
            r#"name = "real-nlvr2"
[data.nlvr2]
root = "{}"
offsets = {{ distill = 8 }}
train_limit = 8
generator = "llm"
prompt = "my.prompt"
[pretrain]
teacher_epochs = 2
nlvr2_from_gqa = false
[teachers]
gqa = ""
nlvr2 = "nlvr2-teacher@teacher"
[distill]
task = "nlvr2"
samples = 4
dev_samples = 4
epochs = 2
[eval]
tasks = ["nlvr2"]
limit = 0
"#,
            real.display()
        ),
    )
    .unwrap();
    let run = |extra: &[(&str, &str)]| {
        let mut c = crate::common::vpd();
        c.current_dir(p).env("VPD_LLM_MODEL", "test-model");
        for (k, v) in extra {
            c.env(k, v);
        }
        c.args(["--store", "st", "run", "real.toml", "--json"])
            .output()
            .unwrap()
    };
    // Without an endpoint: one clear error naming the setting.
    let out = run(&[]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("data.nlvr2.generator") && err.contains("VPD_LLM_BASE_URL"),
        "{err}"
    );
    let out = run(&[("VPD_LLM_BASE_URL", &url)]);
    assert!(
        out.status.success(),
        "{} requests; {}",
        seen.lock().unwrap().len(),
        String::from_utf8_lossy(&out.stderr)
    );
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j["tasks"]["nlvr2"]["base"]["n"], 8, "{j}");
    assert!(j["tasks"]["nlvr2"]["oracle"].is_null());
    assert_eq!(j["pretrained"], serde_json::json!(["nlvr2-teacher@1"]));
    assert!(j["data"]["distill"]
        .as_str()
        .unwrap()
        .contains("train[8:12] (real"));
    assert!(
        j["pseudo_labels"]["by_mode"]["name"]["accuracy"].is_null(),
        "no scene graphs: {j}"
    );
    let asked = seen.lock().unwrap().clone();
    assert!(!asked.is_empty());
    assert!(
        asked.iter().all(|b| b.contains("# my own prompt")),
        "every request carries the experiment's prompt"
    );
}
