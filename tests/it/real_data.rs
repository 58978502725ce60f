//! `vpd eval --data DIR --split NAME` on folders in the real published
//! layout (issue 18): the shared real GQA sample, and a GQA folder the test
//! lays out as the real one is (real split names, JPEGs of real sizes,
//! scene graphs on one split only).

use std::path::Path;

use serde_json::Value;

use crate::common::{peer, vpd_in, vpd_json};

/// A store `st` under `dir` with small pre-trained base students.
fn base_students(dir: &Path) {
    vpd_json(
        dir,
        &[
            "--store", "st", "pretrain", "students", "--n", "40", "--epochs", "1", "--json",
        ],
    );
}

fn eval(dir: &Path, data: &Path, split: &str, extra: &[&str]) -> std::process::Output {
    let data = data.to_str().unwrap();
    let mut args = vec![
        "--store", "st", "eval", "--task", "gqa", "--data", data, "--split", split,
    ];
    args.extend(extra);
    vpd_in(dir, &args)
}

fn json_of(out: &std::process::Output) -> Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn the_real_gqa_sample_is_scored_on_its_real_images() {
    let Some(peer) = peer() else { return };
    let d = tempfile::tempdir().unwrap();
    base_students(d.path());
    let before: Vec<String> = std::fs::read_dir(d.path().join("st/data"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    let j = json_of(&eval(
        d.path(),
        &peer.join("gqa-sample"),
        "SAMPLE-val_balanced",
        &["--json"],
    ));
    assert_eq!(j["score"]["n"], 5, "{j}");
    assert_eq!(j["failed_steps"], 0, "{j}");
    // No scene graphs: the program/module split is not measured, not 0.
    assert!(
        j["program_errors"].is_null() && j["module_errors"].is_null(),
        "{j}"
    );
    let dataset = j["evaluation"]["pipeline"]["dataset"].as_str().unwrap();
    assert!(
        dataset.starts_with("gqa-real-") && dataset.ends_with("/SAMPLE-val_balanced"),
        "{dataset}"
    );
    // Nothing synthetic was made for it.
    let after: Vec<String> = std::fs::read_dir(d.path().join("st/data"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        before, after,
        "no synthetic data made for a real evaluation"
    );
}

#[test]
fn a_gqa_folder_in_the_real_layout_is_evaluated_with_scene_graphs_optional() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    base_students(p);
    // Split `testdev_balanced` without scene graphs, `val_balanced` with
    // them (`sceneGraphs/val_sceneGraphs.json`, named as the real file is).
    let real = synth_real(p, "gqa", "gqa", "12");
    // No scene graphs for testdev: scored, error split not measured.
    let j = json_of(&eval(p, &real, "testdev_balanced", &["--json"]));
    assert_eq!(j["score"]["n"], 12, "{j}");
    assert!(j["program_errors"].is_null(), "{j}");
    // val has its scene graphs: the split is measured, and oracle modules run.
    let v = json_of(&eval(p, &real, "val_balanced", &["--json"]));
    let (pe, me) = (
        v["program_errors"].as_u64().unwrap(),
        v["module_errors"].as_u64().unwrap(),
    );
    let n = v["score"]["n"].as_u64().unwrap();
    let right = v["score"]["correct"].as_u64().unwrap();
    assert_eq!(pe + me, n - right, "{v}");
    let o = json_of(&eval(
        p,
        &real,
        "val_balanced",
        &["--modules", "oracle", "--json"],
    ));
    assert_eq!(
        o["score"]["accuracy"], 100.0,
        "the oracle on its own scene graphs: {o}"
    );
    // Oracle modules without scene graphs: one clear error.
    let out = eval(p, &real, "testdev_balanced", &["--modules", "oracle"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("has none"));
    // A split the folder lacks: the error lists those it has.
    let out = eval(p, &real, "test_balanced", &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no split `test_balanced`")
            && err.contains("testdev_balanced, train_balanced, val_balanced"),
        "{err}"
    );
    // The dataset is known by its content: a copy of the folder shares the
    // stored evaluation, a changed folder does not.
    let copy = p.join("copy");
    std::fs::create_dir_all(copy.join("questions")).unwrap();
    std::fs::copy(
        real.join("questions/testdev_balanced_questions.json"),
        copy.join("questions/testdev_balanced_questions.json"),
    )
    .unwrap();
    let j2 = json_of(&eval(
        p,
        &copy,
        "testdev_balanced",
        &["--images", real.join("images").to_str().unwrap(), "--json"],
    ));
    assert_eq!(j2["reused"], true, "same content, same evaluation");
    // A missing image fails that example at its step; the rest are scored.
    let qs: Value = serde_json::from_slice(
        &std::fs::read(real.join("questions/testdev_balanced_questions.json")).unwrap(),
    )
    .unwrap();
    let used = qs.as_object().unwrap().values().next().unwrap()["imageId"]
        .as_str()
        .unwrap()
        .to_string();
    std::fs::remove_file(real.join(format!("images/{used}.jpg"))).unwrap();
    let m = json_of(&eval(p, &real, "testdev_balanced", &["--json"]));
    assert_eq!(m["reused"], false, "the image list changed: a new dataset");
    assert_eq!(m["score"]["n"], 12);
    assert!(m["failed_steps"].as_u64().unwrap() >= 1, "{m}");
}

/// Issue 18: `vpd eval --teacher` left out the questions whose answer is
/// outside the teacher's answers, which made it look better. They are
/// counted wrong and reported.
#[test]
fn a_teacher_counts_questions_outside_its_answers_as_wrong() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    vpd_json(
        p,
        &[
            "--store", "st", "pretrain", "teacher", "--task", "gqa", "--n", "30", "--epochs", "1",
            "--json",
        ],
    );
    let data = std::fs::read_dir(p.join("st/data"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|d| {
            d.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("gqa-n30")
        })
        .unwrap();
    let file = data.join("questions/test_balanced_questions.json");
    let mut qs: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    let n = qs.as_object().unwrap().len() as u64;
    let first = qs.as_object_mut().unwrap().values_mut().next().unwrap();
    first["answer"] = "zebra".into();
    std::fs::write(&file, serde_json::to_vec(&qs).unwrap()).unwrap();
    let j = vpd_json(
        p,
        &[
            "--store",
            "st",
            "eval",
            "--task",
            "gqa",
            "--teacher",
            "--json",
        ],
    );
    assert_eq!(j["score"]["n"], n, "every question counted: {j}");
    assert_eq!(j["outside_answers"], 1, "{j}");
    assert!(j["score"]["correct"].as_u64().unwrap() < n);
    let out = vpd_in(p, &["--store", "st", "eval", "--task", "gqa", "--teacher"]);
    assert!(String::from_utf8_lossy(&out.stdout)
        .contains("1 question(s) whose answer is outside the teacher's answers"));
}

/// `vpd data synth --layout real` into `dir/name`: the real split names,
/// JPEGs of 200x150 (GQA) or PNG and JPEG named `.png` in numbered
/// folders (NLVR2).
fn synth_real(dir: &Path, task: &str, name: &str, n: &str) -> std::path::PathBuf {
    let out = dir.join(name);
    vpd_json(
        dir,
        &[
            "data",
            "synth",
            "--task",
            task,
            "--layout",
            "real",
            "--out",
            out.to_str().unwrap(),
            "--n",
            n,
            "--width",
            "200",
            "--height",
            "150",
            "--json",
        ],
    );
    out
}

#[test]
fn data_synth_writes_the_real_layout() {
    let d = tempfile::tempdir().unwrap();
    let g = synth_real(d.path(), "gqa", "gqa", "4");
    for f in [
        "questions/train_balanced_questions.json",
        "questions/val_balanced_questions.json",
        "questions/testdev_balanced_questions.json",
        "sceneGraphs/train_sceneGraphs.json",
        "sceneGraphs/val_sceneGraphs.json",
    ] {
        assert!(g.join(f).is_file(), "{f}");
    }
    assert!(!g.join("sceneGraphs/testdev_sceneGraphs.json").exists());
    let train: Value = serde_json::from_slice(
        &std::fs::read(g.join("questions/train_balanced_questions.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        train.as_object().unwrap().len(),
        8,
        "train holds train and distill"
    );
    let img = image::open(g.join("images/1000000.jpg")).unwrap();
    assert_eq!((img.width(), img.height()), (200, 150));
    // The scene graphs are in the image's pixels.
    let sg: Value =
        serde_json::from_slice(&std::fs::read(g.join("sceneGraphs/val_sceneGraphs.json")).unwrap())
            .unwrap();
    let first = sg.as_object().unwrap().values().next().unwrap();
    assert_eq!(
        (first["width"].as_u64(), first["height"].as_u64()),
        (Some(200), Some(150))
    );
    let n = synth_real(d.path(), "nlvr2", "nlvr2", "4");
    let lines = std::fs::read_to_string(n.join("train.json")).unwrap();
    assert_eq!(lines.lines().count(), 8);
    assert!(
        !lines.contains("\"program\""),
        "real lines carry no program"
    );
    assert!(n.join("dev.json").is_file() && n.join("test1.json").is_file());
    let pngs: Vec<_> = std::fs::read_dir(n.join("images/train/1"))
        .unwrap()
        .flatten()
        .map(|e| std::fs::read(e.path()).unwrap())
        .collect();
    assert!(!pngs.is_empty());
    let jpeg_named_png = |b: &Vec<u8>| b.starts_with(&[0xFF, 0xD8]);
    let all: Vec<Vec<u8>> = (0..10)
        .filter_map(|k| std::fs::read_dir(n.join(format!("images/train/{k}"))).ok())
        .flatten()
        .flatten()
        .map(|e| std::fs::read(e.path()).unwrap())
        .collect();
    assert!(all.iter().any(jpeg_named_png) && !all.iter().all(jpeg_named_png));
    // A broken line: one clear error naming the file and line, exit 1.
    base_students(d.path());
    let dev = n.join("dev.json");
    let mut text = std::fs::read_to_string(&dev).unwrap();
    text.push_str("{\"identifier\": \"dev-9-9-0\", \"sentence\": \"cut\n");
    std::fs::write(&dev, text).unwrap();
    let out = vpd_in(
        d.path(),
        &[
            "--store",
            "st",
            "eval",
            "--task",
            "nlvr2",
            "--data",
            n.to_str().unwrap(),
            "--split",
            "dev",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("dev.json") && err.contains("line 5") && err.contains("malformed"),
        "{err}"
    );
}

/// An experiment whose GQA data is a real-layout folder: the teacher is
/// pre-trained on its train role, distillation reads another part of the
/// same split, the test split has no scene graphs.
fn real_experiment(dir: &Path, root: &Path) -> std::path::PathBuf {
    let file = dir.join("real.toml");
    std::fs::write(
        &file,
        format!(
            r#"name = "real-gqa"
[data.gqa]
root = "{}"
offsets = {{ distill = 12 }}
train_limit = 12
[pretrain]
teacher_epochs = 2
[teachers]
nlvr2 = ""
[eval]
tasks = ["gqa"]
limit = 0
[distill]
samples = 12
dev_samples = 8
epochs = 2
"#,
            root.display()
        ),
    )
    .unwrap();
    file
}

#[test]
fn a_run_distils_on_a_gqa_folder_in_the_real_layout_with_nothing_synthetic() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    let real = synth_real(p, "gqa", "gqa", "12");
    let exp = real_experiment(p, &real);
    let exp = exp.to_str().unwrap();
    // No students in the store: vpd would have to make them from its
    // synthetic world, which the experiment does not allow.
    let out = vpd_in(p, &["--store", "st", "run", exp]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("data.allow_synthetic"), "{err}");
    // Two roles reading overlapping parts of one split: refused up front.
    let out = vpd_in(
        p,
        &[
            "--store",
            "st",
            "run",
            exp,
            "--set",
            "data.gqa.splits.dev=train_balanced",
            "--set",
            "data.gqa.offsets.dev=14",
        ],
    );
    assert_eq!(out.status.code(), Some(2), "a configuration error");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("data.gqa.offsets.dev") && err.contains("overlapping"),
        "{err}"
    );
    base_students(p);
    // The teacher's train role over the distill role: refused before any
    // training.
    let out = vpd_in(
        p,
        &[
            "--store",
            "st",
            "run",
            exp,
            "--set",
            "data.gqa.offsets.distill=4",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("train_limit") && err.contains("overlapping"),
        "{err}"
    );
    let j = vpd_json(p, &["--store", "st", "run", exp, "--json"]);
    let row = &j["tasks"]["gqa"];
    assert_eq!(row["base"]["n"], 12, "{j}");
    assert_eq!(row["distilled"]["n"], 12);
    assert!(row["teacher"]["accuracy"].is_number());
    assert!(row["oracle"].is_null(), "no scene graphs on testdev: {row}");
    assert_eq!(j["pretrained"], serde_json::json!(["gqa-teacher@1"]));
    let data = &j["data"];
    assert!(
        data["distill"]
            .as_str()
            .unwrap()
            .contains("train_balanced[12:24] (real"),
        "{data}"
    );
    assert!(data["test gqa"]
        .as_str()
        .unwrap()
        .contains("testdev_balanced (real"));
    assert!(data["replay"].as_str().unwrap().starts_with("none"));
    assert!(data["module gqa-teacher@1"]
        .as_str()
        .unwrap()
        .contains("train_balanced[:12]"));
    // A new version with its lineage and the gate.
    assert_eq!(j["versions"]["vqa"], "vqa@2");
    assert!(j["gates"]["vqa"]["passed"].is_boolean());
    let vs = vpd_json(p, &["--store", "st", "versions", "vqa", "--json"]);
    let v2 = vs
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["number"] == 2)
        .unwrap_or_else(|| panic!("{vs}"));
    assert!(
        v2["parent"].is_string() && v2["teacher"].is_string(),
        "{v2}"
    );
    assert!(v2["data"]
        .as_str()
        .unwrap()
        .contains("train_balanced[12:24]"));
    // Nothing synthetic was made for the run but the students' corpus.
    let made: Vec<String> = std::fs::read_dir(p.join("st/data"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(made.iter().all(|n| n.starts_with("generic-")), "{made:?}");
}

/// `vpd bench real-eval`: a split in the real layout with many questions
/// per image, the bounded cache against off; the same answers, each image
/// decoded once with the cache and once per question without.
#[test]
fn bench_real_eval_decodes_each_image_once_with_the_cache() {
    let d = tempfile::tempdir().unwrap();
    base_students(d.path());
    let j = vpd_json(
        d.path(),
        &[
            "--store",
            "st",
            "bench",
            "real-eval",
            "--questions",
            "40",
            "--images",
            "8",
            "--width",
            "96",
            "--height",
            "72",
            "--json",
        ],
    );
    assert_eq!(j["agree"], true, "{j}");
    assert_eq!(j["images"], 8);
    assert_eq!(j["cached"]["programs"], 40);
    // Each image decoded once, but for two programs that miss the same
    // image at the same moment (each decodes it; one copy is kept).
    let decodes = j["cached"]["image_decodes"].as_u64().unwrap();
    assert!((8..20).contains(&decodes), "{j}");
    assert_eq!(decodes + j["cached"]["cache_hits"].as_u64().unwrap(), 40);
    assert_eq!(j["uncached"]["image_decodes"], 40);
    assert_eq!(j["uncached"]["cache_peak_mb"], 0.0);
    let decoded = 8.0 * 96.0 * 72.0 * 3.0 / (1u64 << 20) as f64;
    let peak = j["cached"]["cache_peak_mb"].as_f64().unwrap();
    assert!((peak - decoded).abs() < 1e-6, "{peak} vs {decoded}");
}
