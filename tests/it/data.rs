//! Datasets: the real formats (peer data), the synthetic world, bad input.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::common::{peer, vpd_in};

fn run_json(dir: &Path, args: &[&str]) -> (i32, Value) {
    let out = vpd_in(dir, args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    let v = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("vpd {args:?}: {e}; stderr: {err}"));
    (out.status.code().unwrap(), v)
}

#[test]
fn peer_gqa_sample_checks_clean() {
    let Some(p) = peer() else { return };
    let q = p.join("gqa-sample/questions/SAMPLE-val_balanced_questions.json");
    let i = p.join("gqa-sample/images");
    let (code, v) = run_json(
        &p,
        &[
            "data",
            "check",
            "--task",
            "gqa",
            "--questions",
            q.to_str().unwrap(),
            "--images",
            i.to_str().unwrap(),
            "--json",
        ],
    );
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["examples"], 5);
    assert_eq!(v["images_missing"], 0);
    assert_eq!(v["errors"].as_array().unwrap().len(), 0);
    assert_eq!(v["images_referenced"], 4);
}

#[test]
fn peer_nlvr2_dev_checks_clean_without_images() {
    let Some(p) = peer() else { return };
    let q = p.join("nlvr2/dev.json");
    let out = vpd_in(
        &p,
        &[
            "data",
            "check",
            "--task",
            "nlvr2",
            "--questions",
            q.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("6982 examples") && text.contains("not checked"),
        "{text}"
    );
    let (code, v) = run_json(
        &p,
        &[
            "data",
            "check",
            "--task",
            "nlvr2",
            "--questions",
            q.to_str().unwrap(),
            "--json",
        ],
    );
    assert_eq!(code, 0);
    assert_eq!(v["examples"], 6982);
    assert_eq!(v["errors"].as_array().unwrap().len(), 0);
    assert_eq!(v["images_checked"], false);
    let t = v["answers"]["True"].as_u64().unwrap();
    let f = v["answers"]["False"].as_u64().unwrap();
    assert_eq!(t + f, 6982);
}

fn synth(dir: &Path, task: &str, n: usize, seed: u64) -> PathBuf {
    let out = dir.join(format!("{task}-{seed}"));
    let o = vpd_in(
        dir,
        &[
            "data",
            "synth",
            "--task",
            task,
            "--out",
            out.to_str().unwrap(),
            "--n",
            &n.to_string(),
            "--seed",
            &seed.to_string(),
            "--size",
            "48",
        ],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    out
}

fn read(p: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

#[test]
fn synthetic_gqa_passes_check_is_balanced_and_splits_are_disjoint() {
    let d = tempfile::tempdir().unwrap();
    let root = synth(d.path(), "gqa", 90, 1);
    let (code, v) = run_json(
        d.path(),
        &[
            "data",
            "check",
            "--task",
            "gqa",
            "--root",
            root.to_str().unwrap(),
            "--json",
        ],
    );
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["examples"], 360);
    assert_eq!(v["images_missing"], 0);
    assert_eq!(v["scene_graphs"], 360);
    for t in ["query", "verify", "logical", "choose", "compare"] {
        assert!(v["types"][t].as_u64().unwrap() > 0, "structural type {t}");
    }
    // Within each family no answer is much more common than its fair share.
    let mut seen_images: HashMap<String, String> = HashMap::new();
    for split in ["train", "distill", "dev", "test"] {
        let qs = read(&root.join(format!("questions/{split}_balanced_questions.json")));
        let mut per_family: HashMap<String, BTreeMap<String, usize>> = HashMap::new();
        for q in qs.as_object().unwrap().values() {
            let fam = q["types"]["detailed"].as_str().unwrap().to_string();
            *per_family
                .entry(fam)
                .or_default()
                .entry(q["answer"].as_str().unwrap().into())
                .or_default() += 1;
            let img = q["imageId"].as_str().unwrap().to_string();
            if let Some(other) = seen_images.insert(img.clone(), split.into()) {
                assert_eq!(other, split, "image {img} in two splits");
            }
        }
        for (fam, answers) in per_family {
            let n: usize = answers.values().sum();
            let max = *answers.values().max().unwrap();
            assert!(
                max <= n.div_ceil(answers.len()).max(2),
                "{split} {fam}: {answers:?}"
            );
        }
    }
    // The adapter's forms are among the families.
    let qs = read(&root.join("questions/train_balanced_questions.json"));
    let texts: Vec<&str> = qs
        .as_object()
        .unwrap()
        .values()
        .map(|q| q["question"].as_str().unwrap())
        .collect();
    assert!(texts
        .iter()
        .any(|t| t.starts_with("What color is the ") && !t.contains(" on the ")));
    assert!(texts.iter().any(|t| t.starts_with("Is there a ")));
    assert!(texts.iter().any(|t| t.starts_with("How many ")));
}

#[test]
fn synthetic_nlvr2_passes_check_with_balanced_labels_and_programs() {
    let d = tempfile::tempdir().unwrap();
    let root = synth(d.path(), "nlvr2", 64, 2);
    let (code, v) = run_json(
        d.path(),
        &[
            "data",
            "check",
            "--task",
            "nlvr2",
            "--root",
            root.to_str().unwrap(),
            "--json",
        ],
    );
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["examples"], 256);
    assert_eq!(v["images_missing"], 0);
    assert_eq!(v["images_referenced"], 512);
    assert_eq!(v["answers"]["True"], 128);
    assert_eq!(v["answers"]["False"], 128);
    let lines = std::fs::read_to_string(root.join("train.json")).unwrap();
    let mut pairs = HashSet::new();
    for l in lines.lines() {
        let e: Value = serde_json::from_str(l).unwrap();
        let prog = e["program"].as_str().unwrap();
        assert!(
            prog.ends_with("FINAL_ANSWER=RESULT(var=ANSWER1)")
                || prog.ends_with("FINAL_ANSWER=RESULT(var=ANSWER2)")
        );
        assert!(prog.contains("VQA(image="));
        let id = e["identifier"].as_str().unwrap();
        assert!(
            pairs.insert(id.rsplit_once('-').unwrap().0.to_string()),
            "pair reused"
        );
    }
    assert!(
        lines.contains("The left image contains exactly")
            || lines.contains("The right image contains exactly")
    );
}

#[test]
fn synthesis_is_deterministic_from_the_seed() {
    let d = tempfile::tempdir().unwrap();
    let a = synth(d.path(), "gqa", 20, 5);
    let b_dir = d.path().join("again");
    std::fs::create_dir_all(&b_dir).unwrap();
    let b = synth(&b_dir, "gqa", 20, 5);
    let c = synth(d.path(), "gqa", 20, 6);
    let f = "questions/dev_balanced_questions.json";
    assert_eq!(
        std::fs::read(a.join(f)).unwrap(),
        std::fs::read(b.join(f)).unwrap()
    );
    assert_eq!(
        std::fs::read(a.join("images/3000004.png")).unwrap(),
        std::fs::read(b.join("images/3000004.png")).unwrap()
    );
    assert_ne!(
        std::fs::read(a.join(f)).unwrap(),
        std::fs::read(c.join(f)).unwrap()
    );
}

#[test]
fn generic_corpus_has_crops_scenes_and_boxes() {
    let d = tempfile::tempdir().unwrap();
    let root = synth(d.path(), "generic", 30, 3);
    let text = std::fs::read_to_string(root.join("train.jsonl")).unwrap();
    let recs: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let kinds: HashSet<&str> = recs.iter().map(|r| r["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, HashSet::from(["crop", "scene", "boxes"]));
    for r in &recs {
        assert!(root.join(r["image"].as_str().unwrap()).exists());
        if r["kind"] == "boxes" {
            assert!(!r["boxes"].as_array().unwrap().is_empty());
        }
    }
    assert!(recs.iter().any(|r| r["question"]
        .as_str()
        .is_some_and(|q| q.starts_with("How many"))));
    assert!(recs.iter().any(|r| r["question"] == "What color is it?"));
}

// ---- bad input ----------------------------------------------------------

#[test]
fn a_truncated_gqa_file_is_one_error_with_its_position() {
    let d = tempfile::tempdir().unwrap();
    let f = d.path().join("train_balanced_questions.json");
    let text = r#"{"1": {"imageId": "7", "question": "Is it?", "answer": "yes"}, "2": {"imageId": "8", "quest"#;
    std::fs::write(&f, text).unwrap();
    let (code, v) = run_json(
        d.path(),
        &[
            "data",
            "check",
            "--task",
            "gqa",
            "--questions",
            f.to_str().unwrap(),
            "--json",
        ],
    );
    assert_eq!(code, 1);
    let errs = v["errors"].as_array().unwrap();
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(errs[0]["file"]
        .as_str()
        .unwrap()
        .ends_with("train_balanced_questions.json"));
    assert_eq!(
        errs[0]["at"],
        format!("line 1 column {}", text.len()),
        "where the file ends"
    );
    assert!(errs[0]["message"].as_str().unwrap().contains("EOF"));
}

#[test]
fn an_ill_typed_gqa_question_names_its_id_and_field_and_the_rest_load() {
    let d = tempfile::tempdir().unwrap();
    let f = d.path().join("val_balanced_questions.json");
    std::fs::write(
        &f,
        r#"{"q1": {"imageId": "7", "question": "Is it?", "answer": "yes", "newField": 3},
            "q2": {"imageId": 8, "question": "What?"},
            "q3": {"question": "Where?"}}"#,
    )
    .unwrap();
    let (code, v) = run_json(
        d.path(),
        &[
            "data",
            "check",
            "--task",
            "gqa",
            "--questions",
            f.to_str().unwrap(),
            "--json",
        ],
    );
    assert_eq!(code, 1);
    assert_eq!(v["examples"], 1, "unknown fields are tolerated");
    let errs = v["errors"].as_array().unwrap();
    assert_eq!(errs.len(), 2);
    assert_eq!(errs[0]["at"], "question q2");
    assert!(
        errs[0]["message"]
            .as_str()
            .unwrap()
            .contains("invalid type: integer `8`"),
        "{errs:?}"
    );
    assert_eq!(errs[1]["at"], "question q3");
    assert!(errs[1]["message"]
        .as_str()
        .unwrap()
        .contains("missing field `imageId`"));
}

#[test]
fn a_wrong_type_on_an_nlvr2_line_names_the_line() {
    let d = tempfile::tempdir().unwrap();
    let f = d.path().join("dev.json");
    std::fs::write(
        &f,
        "{\"identifier\": \"dev-1-0-0\", \"sentence\": \"Two dogs.\", \"label\": \"True\"}\n\
         {\"identifier\": \"dev-1-1-0\", \"sentence\": 5, \"label\": \"False\"}\n\
         {\"identifier\": \"dev-1-2-0\", \"sentence\": \"x\", \"label\": \"maybe\"}\n",
    )
    .unwrap();
    let out = vpd_in(
        d.path(),
        &[
            "data",
            "check",
            "--task",
            "nlvr2",
            "--questions",
            f.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("dev.json: line 2 column") && err.contains("invalid type: integer `5`"),
        "{err}"
    );
    assert!(
        err.contains("dev.json: line 3") && err.contains("\"True\" or \"False\""),
        "{err}"
    );
}

#[test]
fn nlvr2_images_in_numbered_folders_and_jpeg_named_png_are_read() {
    let d = tempfile::tempdir().unwrap();
    let f = d.path().join("train.json");
    std::fs::write(
        &f,
        "{\"identifier\": \"train-3-1-0\", \"sentence\": \"A dog.\", \"label\": \"True\"}\n",
    )
    .unwrap();
    let imgs = d.path().join("images/train/17");
    std::fs::create_dir_all(&imgs).unwrap();
    let img = image::RgbImage::from_pixel(8, 8, image::Rgb([200, 10, 10]));
    img.save_with_format(imgs.join("train-3-1-img0.png"), image::ImageFormat::Jpeg)
        .unwrap();
    img.save_with_format(imgs.join("train-3-1-img1.png"), image::ImageFormat::Png)
        .unwrap();
    let (code, v) = run_json(
        d.path(),
        &[
            "data",
            "check",
            "--task",
            "nlvr2",
            "--questions",
            f.to_str().unwrap(),
            "--images",
            d.path().join("images").to_str().unwrap(),
            "--json",
        ],
    );
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["images_referenced"], 2);
    assert_eq!(v["images_missing"], 0);
    let bytes = std::fs::read(imgs.join("train-3-1-img0.png")).unwrap();
    assert_eq!(&bytes[..2], &[0xFF, 0xD8], "really a JPEG");
}

#[test]
fn an_image_that_is_not_an_image_and_a_missing_one_are_reported() {
    let d = tempfile::tempdir().unwrap();
    let f = d.path().join("val_balanced_questions.json");
    std::fs::write(
        &f,
        r#"{"1": {"imageId": "a", "question": "?"}, "2": {"imageId": "b", "question": "?"}}"#,
    )
    .unwrap();
    let imgs = d.path().join("images");
    std::fs::create_dir_all(&imgs).unwrap();
    std::fs::write(imgs.join("a.jpg"), b"<html>not an image</html>").unwrap();
    let (code, v) = run_json(
        d.path(),
        &[
            "data",
            "check",
            "--task",
            "gqa",
            "--questions",
            f.to_str().unwrap(),
            "--images",
            imgs.to_str().unwrap(),
            "--json",
        ],
    );
    assert_eq!(code, 1);
    assert_eq!(v["images_missing"], 1);
    assert_eq!(v["missing_examples"][0], "b.jpg");
    let e = &v["errors"][0];
    assert!(e["file"].as_str().unwrap().ends_with("a.jpg"));
    assert!(
        e["message"].as_str().unwrap().contains("not a PNG or JPEG"),
        "{e}"
    );
}

#[test]
fn synth_refuses_bad_settings() {
    let d = tempfile::tempdir().unwrap();
    let o = vpd_in(
        d.path(),
        &[
            "data", "synth", "--task", "gqa", "--out", "x", "--size", "4",
        ],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--size 4"));
    let o = vpd_in(d.path(), &["data", "synth", "--task", "vqa2", "--out", "x"]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn bench_data_reports_rendering_and_loading_with_memory() {
    let d = tempfile::tempdir().unwrap();
    let (code, v) = run_json(
        d.path(),
        &[
            "bench",
            "data",
            "--questions",
            "3000",
            "--mb",
            "4",
            "--json",
        ],
    );
    assert_eq!(code, 0);
    assert!(v["images_per_s"].as_f64().unwrap() > 0.0);
    assert!(v["images_png_per_s"].as_f64().unwrap() > 0.0);
    assert_eq!(v["streaming"]["questions"], 3000);
    assert_eq!(v["typed"]["questions"], 3000);
    assert_eq!(v["tree_tenth"]["questions"], 300);
    let bytes = v["file_bytes"].as_u64().unwrap();
    assert!(
        (3_000_000..5_000_000).contains(&bytes),
        "padded to about 4 MB: {bytes}"
    );
    for k in ["streaming", "typed", "tree_tenth"] {
        assert!(v[k]["peak_rss_mb"].as_f64().unwrap() >= v[k]["base_rss_mb"].as_f64().unwrap());
    }
}
