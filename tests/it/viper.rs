//! ViperGPT programs (`examples/viper/`): checked and run in the sandbox
//! with oracle modules on the synthetic world and with the shipped
//! students on a real GQA photo; hostile programs end in one error each.

use std::path::{Path, PathBuf};

use visprog_distiller::models;
use visprog_distiller::store::Store;

use crate::common::{peer, vpd, vpd_in, vpd_json};

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples/viper")
        .join(name)
}

/// A small synthetic GQA set (seed 1): image 1000000 holds a red, a blue
/// and an orange diamond and a cross.
fn synthetic(dir: &Path) -> PathBuf {
    let out = vpd_in(
        dir,
        &[
            "data", "synth", "--task", "gqa", "--out", "syn", "--n", "20", "--seed", "1",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    dir.join("syn/images/1000000.png")
}

fn run_json(dir: &Path, program: &Path, image: &Path, modules: &[&str]) -> serde_json::Value {
    let image = format!("image={}", image.display());
    let mut args = vec![
        "--store",
        "st",
        "program",
        "run",
        program.to_str().unwrap(),
        "--image",
        &image,
        "--json",
        "--modules",
    ];
    args.extend_from_slice(modules);
    vpd_json(dir, &args)
}

/// Runs `program` on `image` with oracle modules; asserts exit 1 and
/// returns stderr.
fn fails(dir: &Path, program: &str, image: &Path) -> String {
    let bad = dir.join("bad.py");
    std::fs::write(&bad, program).unwrap();
    let image = format!("image={}", image.display());
    let args = [
        "program",
        "run",
        bad.to_str().unwrap(),
        "--image",
        &image,
        "--modules",
        "oracle",
    ];
    let out = vpd_in(dir, &args);
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(1), "{err}");
    err
}

#[test]
fn every_api_method_runs_with_oracle_modules_on_the_synthetic_world() {
    let d = tempfile::tempdir().unwrap();
    let img = synthetic(d.path());
    let check = vpd_json(
        d.path(),
        &[
            "program",
            "check",
            example("every.py").to_str().unwrap(),
            "--json",
        ],
    );
    assert_eq!(check["valid"], 1, "{check}");
    assert_eq!(check["framework"], "viper");
    let j = run_json(d.path(), &example("every.py"), &img, &["oracle"]);
    // Colours sorted by a key that asks VQA (the rewrite), the left half
    // holding one diamond, the leftmost (red) one chosen and verified, the
    // cross found and named, the orange diamond's box in ViperGPT's
    // coordinates (y up from the bottom of the 64-pixel image).
    assert_eq!(
        j["result"],
        "['blue', 'orange', 'red']|1|red|yes|yes|cross|0|30.4|False|3|[39, 26, 55, 42, 16, 16, 47.0, 34.0]|IndexError",
        "{j:#}"
    );
    let calls = j["calls"].as_array().unwrap();
    assert!(calls.iter().all(|c| c["module"] == "oracle"));
    let slots: Vec<&str> = calls.iter().map(|c| c["slot"].as_str().unwrap()).collect();
    assert!(slots.contains(&"loc") && slots.contains(&"vqa"));
    // The pointer of a call on a found patch is the find that made it.
    let verify = calls
        .iter()
        .find(|c| c["method"] == "verify_property")
        .unwrap();
    assert_eq!(verify["pointer"]["object"], "diamond", "{verify}");
    assert_eq!(verify["text"], "Is the diamond red?");
    assert_eq!(verify["rect"]["x"], 2.0);

    // A program returning a patch gives its box in the source image.
    let p = run_json(d.path(), &example("patch.py"), &img, &["oracle"]);
    assert_eq!(p["value"]["kind"], "patch", "{p:#}");
    let r = &p["value"]["rect"];
    assert_eq!((r["x"].as_f64(), r["y"].as_f64()), (Some(44.0), Some(44.0)));
    assert_eq!((r["w"].as_f64(), r["h"].as_f64()), (Some(16.0), Some(16.0)));

    // A Python exception fails the example with its type, message and line.
    let err = fails(
        d.path(),
        "def execute_command(image):\n    p = ImagePatch(image)\n    return p.find('ring')[0].simple_query()\n",
        &img,
    );
    assert!(err.contains("line 3: IndexError"), "{err}");
    // compute_depth has no module to fill it: an error that says so.
    let err = fails(
        d.path(),
        "def execute_command(image):\n    return ImagePatch(image).compute_depth()\n",
        &img,
    );
    assert!(
        err.contains("NotImplementedError") && err.contains("DEPTH"),
        "{err}"
    );
}

#[test]
fn a_viper_program_runs_on_a_real_gqa_photo_with_the_shipped_students() {
    let Some(peer) = peer() else { return };
    let d = tempfile::tempdir().unwrap();
    let store = Store::open(d.path().join("st")).unwrap();
    for (module, alias) in [("vqa", "base"), ("loc", "base")] {
        let (entry, bytes) = models::shipped::find(module, alias).unwrap().unwrap();
        models::shipped::import(&store, &entry, bytes).unwrap();
    }
    drop(store);
    let photo = peer.join("gqa-sample/images/1159529.jpg");
    let trace = d.path().join("t.html");
    let j = vpd_json(
        d.path(),
        &[
            "--store",
            "st",
            "program",
            "run",
            example("photo.py").to_str().unwrap(),
            "--image",
            &format!("image={}", photo.display()),
            "--modules",
            "VQA=vqa@1",
            "LOC=loc@1",
            "--trace",
            trace.to_str().unwrap(),
            "--json",
        ],
    );
    assert!(j["result"].is_string(), "{j:#}");
    let calls = j["calls"].as_array().unwrap();
    assert_eq!(calls[0]["module"], "loc@1", "{j:#}");
    assert_eq!(calls[0]["rect"]["w"], 800.0, "the whole photo");
    assert!(calls.iter().any(|c| c["module"] == "vqa@1"));
    let html = std::fs::read_to_string(&trace).unwrap();
    assert!(html.contains("data:image/png;base64,") && html.contains("simple_query"));
}

#[test]
fn hostile_programs_end_in_one_error_within_seconds() {
    let d = tempfile::tempdir().unwrap();
    let img = synthetic(d.path());
    let secret = d.path().join("secret.txt");
    std::fs::write(&secret, "untouched").unwrap();
    let body = |b: &str| format!("def execute_command(image):\n{b}\n");
    let cases: Vec<(&str, String, &str)> = vec![
        ("import", body("    import os\n    return os.getcwd()"), "imports are not available"),
        ("open", body(&format!("    return open({:?}).read()", secret.display())), "`open` is not available"),
        ("__import__", body("    return __import__('os')"), "`__import__` is not allowed"),
        ("eval", body("    return eval('1+1')"), "`eval` is not available"),
        ("exec", body("    exec('x = 1')\n    return 1"), "`exec` is not available"),
        ("subclasses", body("    return ().__class__.__bases__[0].__subclasses__()"), "`__class__` is not allowed"),
        ("endless loop", body("    while True:\n        pass"), "VPD_VIPER_MAX_SECONDS"),
        ("[0] * 10**10", body("    return len([0] * 10**10)"), "VPD_VIPER_MAX_MEMORY_MB"),
        ("10**10**10", body("    return 10**10**10"), "VPD_VIPER_MAX_MEMORY_MB"),
        ("recursion", body("    def f(n):\n        return f(n + 1)\n    return f(0)"), "VPD_VIPER_MAX_RECURSION"),
        ("doubled string", body("    s = 'ab'\n    for i in range(64):\n        s = s + s\n    return len(s)"), "VPD_VIPER_MAX_MEMORY_MB"),
        ("5000 parentheses", body(&format!("    return {}1{}", "(".repeat(5000), ")".repeat(5000))), "VPD_VIPER_MAX_NESTING"),
        ("ten million calls", body("    p = ImagePatch(image)\n    n = 0\n    for i in range(10000000):\n        n += len(p.find('circle'))\n    return n"), "VPD_VIPER_MAX_CALLS"),
        ("10 MB", format!("{}{}", body("    return 1"), "# padding\n".repeat(1_000_000)), "VPD_VIPER_MAX_BYTES"),
    ];
    for (what, program, says) in &cases {
        let file = d.path().join("hostile.py");
        std::fs::write(&file, program).unwrap();
        let t0 = std::time::Instant::now();
        let out = vpd()
            .current_dir(d.path())
            .env("VPD_VIPER_MAX_SECONDS", "1")
            .args([
                "program",
                "run",
                file.to_str().unwrap(),
                "--image",
                &format!("image={}", img.display()),
                "--modules",
                "oracle",
            ])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{what}: {err}");
        assert!(err.contains(says), "{what}: {says:?} not in {err}");
        assert!(!err.contains("panicked"), "{what}: {err}");
        assert!(
            t0.elapsed().as_secs() < 20,
            "{what} took {:?}",
            t0.elapsed()
        );
    }
    assert_eq!(std::fs::read_to_string(&secret).unwrap(), "untouched");
}

#[test]
fn program_check_names_line_and_column_and_the_framework_can_be_forced() {
    let d = tempfile::tempdir().unwrap();
    let f = d.path().join("p.py");
    std::fs::write(
        &f,
        "def execute_command(image):\n    patch = ImagePatch(image)\n    return patch.fnd('cat')\n",
    )
    .unwrap();
    let out = vpd_in(
        d.path(),
        &["program", "check", f.to_str().unwrap(), "--json"],
    );
    assert_eq!(out.status.code(), Some(1));
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j["errors"][0]["line"], 3, "{j}");
    assert_eq!(j["errors"][0]["column"], 18, "{j}");
    assert!(j["errors"][0]["message"]
        .as_str()
        .unwrap()
        .contains("`fnd`"));
    // Forced to VisProg, the same file is a VisProg syntax error.
    let out = vpd_in(
        d.path(),
        &[
            "program",
            "check",
            f.to_str().unwrap(),
            "--framework",
            "visprog",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("error"));
    // --var is VisProg's: refused for a ViperGPT program, naming it.
    let out = vpd_in(
        d.path(),
        &["program", "run", f.to_str().unwrap(), "--var", "A=1"],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--var A=1"));
    // A .jsonl line says which framework its program is.
    let l = d.path().join("mixed.jsonl");
    let lines = [
        serde_json::json!({"program": "ANSWER0=VQA(image=IMAGE,question='What is it?')\nFINAL_RESULT=RESULT(var=ANSWER0)"}),
        serde_json::json!({"framework": "viper", "program": std::fs::read_to_string(example("patch.py")).unwrap()}),
        serde_json::json!({"framework": "viper", "program": "def execute_command(image):\n    import os\n"}),
    ];
    std::fs::write(
        &l,
        lines
            .iter()
            .map(|x| x.to_string() + "\n")
            .collect::<String>(),
    )
    .unwrap();
    let out = vpd_in(
        d.path(),
        &["program", "check", l.to_str().unwrap(), "--json"],
    );
    assert_eq!(out.status.code(), Some(1));
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (j["programs"].as_u64(), j["valid"].as_u64()),
        (Some(3), Some(2)),
        "{j}"
    );
    assert_eq!(j["errors"][0]["index"], 2);
    assert_eq!(j["errors"][0]["line"], 2);
    // A file without `.py` that defines execute_command is ViperGPT's.
    let g = d.path().join("program.txt");
    std::fs::copy(example("patch.py"), &g).unwrap();
    let j = vpd_json(
        d.path(),
        &["program", "check", g.to_str().unwrap(), "--json"],
    );
    assert_eq!(
        (j["framework"].as_str(), j["valid"].as_u64()),
        (Some("viper"), Some(1))
    );
}

/// `llm_query` asks the OpenAI-compatible endpoint of `VPD_LLM_BASE_URL`
/// (here a local server that answers like one): its answer is the
/// program's, the call is in the trace with the question it was asked.
/// Without the setting, and with an endpoint that is down, the program
/// fails with an error naming what to set or where it asked.
#[test]
fn llm_query_asks_the_endpoint_and_names_the_setting_without_one() {
    use crate::llm::{completion, serve, Reply};
    let d = tempfile::tempdir().unwrap();
    let img = synthetic(d.path());
    let (url, seen) = serve(vec![Reply::Body(completion("Cherry."))]);
    let image = format!("image={}", img.display());
    let prog = example("knowledge.py");
    let args = [
        "program",
        "run",
        prog.to_str().unwrap(),
        "--image",
        &image,
        "--modules",
        "oracle",
        "--json",
    ];
    let out = vpd()
        .current_dir(d.path())
        .env("VPD_LLM_BASE_URL", &url)
        .env("VPD_LLM_MODEL", "test-model")
        .args(args)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j["result"], "Cherry", "{j:#}");
    let calls = j["calls"].as_array().unwrap();
    let llm = calls.iter().find(|c| c["slot"] == "llm").unwrap();
    // The first diamond `find` gives is the orange one (see above).
    assert_eq!(llm["text"], "Which fruit is usually orange?", "{llm}");
    assert!(llm["rect"].is_null() && llm["source"].is_null(), "{llm}");
    assert_eq!(llm["module"], format!("llm:test-model@{url}"));
    let asked = seen.lock().unwrap().join("\n");
    assert!(
        asked.contains("Which fruit is usually orange?") && asked.contains("one to three words"),
        "{asked}"
    );
    // No endpoint set: an error naming the setting.
    let out = vpd()
        .current_dir(d.path())
        .env_remove("VPD_LLM_BASE_URL")
        .args(&args[..7])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("VPD_LLM_BASE_URL") && err.contains("line 10"),
        "{err}"
    );
    // An endpoint that is down: an error naming where it asked.
    let out = vpd()
        .current_dir(d.path())
        .env("VPD_LLM_BASE_URL", "http://127.0.0.1:9/v1")
        .env("VPD_LLM_RETRIES", "0")
        .args(&args[..7])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("127.0.0.1:9"), "{err}");
}
