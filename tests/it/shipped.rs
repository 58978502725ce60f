//! The quickstart's shipped base checkpoints (`checkpoints/quickstart/`,
//! issue 22): they are what their manifest says, the quickstart takes them
//! instead of training, and they re-derive from their recorded recipe.

use std::path::Path;

use serde_json::Value;

use crate::common::vpd_json;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn manifest() -> Value {
    serde_json::from_slice(
        &std::fs::read(root().join("checkpoints/quickstart/manifest.json")).unwrap(),
    )
    .unwrap()
}

#[test]
fn the_shipped_checkpoints_are_what_their_manifest_says() {
    let m = manifest();
    let entries = m["versions"].as_array().unwrap();
    let names: Vec<String> = entries
        .iter()
        .map(|e| {
            format!(
                "{}@{}",
                e["module"].as_str().unwrap(),
                e["alias"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(names, ["vqa@base", "loc@base", "gqa-teacher@teacher"]);
    let mut total = 0;
    for e in entries {
        let bytes = std::fs::read(
            root()
                .join("checkpoints/quickstart")
                .join(e["file"].as_str().unwrap()),
        )
        .unwrap();
        total += bytes.len();
        let sha = visprog_distiller::store::sha256_hex(&bytes);
        assert_eq!(sha, e["sha256"].as_str().unwrap(), "{}", e["file"]);
        assert!(e["config"]["train"]["epochs"].is_number(), "a recipe: {e}");
    }
    assert!(total < 8 << 20, "a few MB: {total} bytes");
    assert!(
        m["made_by"].as_str().unwrap().contains("core(s)"),
        "names its machine"
    );
}

/// The quickstart's recipe with a small distillation: every base version
/// comes from the shipped checkpoints, nothing is trained before the
/// distillation; a changed recipe trains instead.
#[test]
fn a_run_with_the_quickstarts_recipe_takes_the_shipped_checkpoints() {
    let d = tempfile::tempdir().unwrap();
    let small = [
        "--set",
        "data.gqa_n=60",
        "--set",
        "pretrain.gqa_teacher_n=6000",
        "--set",
        "data.generic_n=60",
        "--set",
        "pretrain.students_n=2000",
        "--set",
        "data.nlvr2_n=30",
        "--set",
        "distill.samples=40",
        "--set",
        "distill.dev_samples=20",
        "--set",
        "distill.replay_samples=40",
        "--set",
        "distill.epochs=2",
        "--set",
        "eval.limit=30",
    ];
    let mut args = vec!["--store", "st", "run", "--json"];
    args.extend(small);
    let j = vpd_json(d.path(), &args);
    assert_eq!(
        j["shipped"],
        serde_json::json!(["vqa@1", "loc@1", "gqa-teacher@1"]),
        "{j}"
    );
    assert!(j["pretrained"].as_array().unwrap().is_empty(), "{j}");
    assert!(j["data"]["module gqa-teacher@1"]
        .as_str()
        .unwrap()
        .contains("shipped checkpoint checkpoints/quickstart/gqa-teacher.ckpt"));
    assert!(j["recipe_differences"].as_object().unwrap().is_empty());
    // The teacher's metrics in the store are the manifest's, with where it
    // came from.
    let t = vpd_json(
        d.path(),
        &["--store", "st", "versions", "gqa-teacher", "--json"],
    );
    let m = manifest();
    assert_eq!(
        t[0]["metrics"]["test_accuracy"],
        m["versions"][2]["metrics"]["test_accuracy"]
    );
    assert!(t[0]["metrics"]["shipped"]["made_by"].is_string());
    // Another recipe for the students: they are trained, not taken.
    let d2 = tempfile::tempdir().unwrap();
    let mut args = vec![
        "--store",
        "st",
        "run",
        "--json",
        "--set",
        "pretrain.vqa_epochs=1",
    ];
    args.extend(small);
    let j = vpd_json(d2.path(), &args);
    assert_eq!(
        j["shipped"],
        serde_json::json!(["loc@1", "gqa-teacher@1"]),
        "{j}"
    );
    assert_eq!(j["pretrained"], serde_json::json!(["vqa@1"]));
}

/// The shipped checkpoints re-derived from their recorded recipe: the same
/// accuracy (on the same kind of machine the same weights; on another, the
/// same within a point or two).
#[test]
fn the_shipped_checkpoints_re_derive_from_their_recipe() {
    let d = tempfile::tempdir().unwrap();
    let m = manifest();
    let e = |module: &str| {
        m["versions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["module"] == module)
            .unwrap()
            .clone()
    };
    let (vqa, loc, teacher) = (e("vqa"), e("loc"), e("gqa-teacher"));
    let arg = |v: &Value, k: &str| v["config"].pointer(k).unwrap().to_string();
    let students = vpd_json(
        d.path(),
        &[
            "--store",
            "st",
            "pretrain",
            "students",
            "--n",
            &arg(&vqa, "/n"),
            "--epochs",
            &arg(&vqa, "/train/epochs"),
            "--seed",
            &arg(&vqa, "/train/seed"),
            "--json",
        ],
    );
    assert_eq!(
        arg(&loc, "/train/epochs"),
        arg(&vqa, "/train/epochs"),
        "one recipe for both students"
    );
    let tj = vpd_json(
        d.path(),
        &[
            "--store",
            "st",
            "pretrain",
            "teacher",
            "--task",
            "gqa",
            "--n",
            &arg(&teacher, "/n"),
            "--epochs",
            &arg(&teacher, "/train/epochs"),
            "--seed",
            &arg(&teacher, "/train/seed"),
            "--json",
        ],
    );
    let close = |what: &str, got: f64, want: f64| {
        assert!(
            (got - want).abs() <= 2.0,
            "{what}: re-derived {got:.2}, shipped {want:.2}"
        );
    };
    let versions = vpd_json(d.path(), &["--store", "st", "versions", "--json"]);
    let metric = |module: &str, k: &str| {
        versions
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["module"] == module)
            .unwrap()["metrics"][k]
            .as_f64()
            .unwrap()
    };
    let _ = (students, tj);
    close(
        "vqa test accuracy",
        metric("vqa", "test_accuracy"),
        vqa["metrics"]["test_accuracy"].as_f64().unwrap(),
    );
    close(
        "loc test recall",
        metric("loc", "test_recall"),
        loc["metrics"]["test_recall"].as_f64().unwrap(),
    );
    close(
        "loc test precision",
        metric("loc", "test_precision"),
        loc["metrics"]["test_precision"].as_f64().unwrap(),
    );
    close(
        "gqa teacher test accuracy",
        metric("gqa-teacher", "test_accuracy"),
        teacher["metrics"]["test_accuracy"].as_f64().unwrap(),
    );
    // The recipe it recorded is the shipped one.
    for v in versions.as_array().unwrap() {
        let shipped = e(v["module"].as_str().unwrap());
        let mut got = v["config"].clone();
        let mut want = shipped["config"].clone();
        got.as_object_mut().unwrap().remove("device");
        want.as_object_mut().unwrap().remove("device");
        assert_eq!(got, want, "{}", v["module"]);
    }
}
