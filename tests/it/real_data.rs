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

/// A GQA folder in the real layout, made from synthetic data: split
/// `testdev_balanced` (no scene graphs) and `val_balanced` (with
/// `sceneGraphs/val_sceneGraphs.json`, named as the real file is), images
/// as JPEG at 500x375.
fn real_layout(dir: &Path) -> std::path::PathBuf {
    let synth = dir.join("synth");
    let out = vpd_in(
        dir,
        &[
            "data",
            "synth",
            "--task",
            "gqa",
            "--out",
            synth.to_str().unwrap(),
            "--n",
            "12",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let real = dir.join("gqa");
    std::fs::create_dir_all(real.join("questions")).unwrap();
    std::fs::create_dir_all(real.join("sceneGraphs")).unwrap();
    std::fs::create_dir_all(real.join("images")).unwrap();
    for (from, to) in [("test", "testdev_balanced"), ("dev", "val_balanced")] {
        std::fs::copy(
            synth.join(format!("questions/{from}_balanced_questions.json")),
            real.join(format!("questions/{to}_questions.json")),
        )
        .unwrap();
    }
    std::fs::copy(
        synth.join("sceneGraphs/dev_sceneGraphs.json"),
        real.join("sceneGraphs/val_sceneGraphs.json"),
    )
    .unwrap();
    for e in std::fs::read_dir(synth.join("images")).unwrap().flatten() {
        let p = e.path();
        if p.extension().is_some_and(|x| x == "png") {
            let img = image::open(&p).unwrap().resize_exact(
                500,
                375,
                image::imageops::FilterType::Triangle,
            );
            let name = p.file_stem().unwrap().to_string_lossy().into_owned();
            img.to_rgb8()
                .save(real.join(format!("images/{name}.jpg")))
                .unwrap();
        }
    }
    real
}

#[test]
fn a_gqa_folder_in_the_real_layout_is_evaluated_with_scene_graphs_optional() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    base_students(p);
    let real = real_layout(p);
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
        err.contains("no split `test_balanced`") && err.contains("testdev_balanced, val_balanced"),
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
