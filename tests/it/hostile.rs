//! Issue 23: hostile but fair input and destructive commands. Each test is
//! named after what it guards; the first two items (EVAL depth and length,
//! LLM failures in the cache) are in `programs.rs` and `llm.rs`.

use std::path::Path;

use crate::common::{vpd, vpd_in};

fn run(dir: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    let out = vpd_in(dir, args);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A store with `vqa@1` and `vqa@2` (tiny files: the store does not look
/// inside checkpoints it imports without a sidecar).
fn store_with_two_versions(dir: &Path) {
    for (i, text) in ["first", "second"].iter().enumerate() {
        let f = dir.join(format!("v{i}.pt"));
        std::fs::write(&f, text).unwrap();
        let (code, _, err) = run(
            dir,
            &[
                "--store",
                "st",
                "store",
                "import",
                "vqa",
                f.to_str().unwrap(),
            ],
        );
        assert_eq!(code, Some(0), "{err}");
    }
}

fn no_temp_files(dir: &Path) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let n = e.file_name().to_string_lossy().into_owned();
        assert!(!n.contains(".tmp-"), "{n} left in {}", dir.display());
    }
}

#[test]
fn export_refuses_targets_inside_the_store_links_devices_and_existing_files() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    store_with_two_versions(p);
    let blob_dir = std::fs::read_dir(p.join("st/blobs/sha256"))
        .unwrap()
        .flatten()
        .next()
        .unwrap()
        .path();
    let blob = std::fs::read_dir(&blob_dir)
        .unwrap()
        .flatten()
        .next()
        .unwrap()
        .path();
    let before = std::fs::read(&blob).unwrap();
    std::os::unix::fs::symlink(p.join("v0.pt"), p.join("link.pt")).unwrap();
    for (target, why) in [
        (blob.to_str().unwrap(), "inside the store"),
        ("st/db/conf", "inside the store"),
        ("/dev/null", "not a regular file"),
        ("link.pt", "symbolic link"),
        ("v0.pt", "exists; --force replaces it"),
        ("no/such/folder/x.pt", "folder does not exist"),
    ] {
        let (code, _, err) = run(p, &["--store", "st", "store", "export", "vqa@2", target]);
        assert_eq!(code, Some(1), "{target}: {err}");
        assert!(err.contains(why), "{target}: {err}");
    }
    assert_eq!(
        std::fs::read(&blob).unwrap(),
        before,
        "the other version's blob is intact"
    );
    assert!(std::fs::symlink_metadata(p.join("link.pt"))
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(std::fs::read_to_string(p.join("v0.pt")).unwrap(), "first");
    // A new file, then --force over it.
    let (code, _, err) = run(p, &["--store", "st", "store", "export", "vqa@2", "out.pt"]);
    assert_eq!(code, Some(0), "{err}");
    let (code, _, err) = run(
        p,
        &[
            "--store", "st", "store", "export", "vqa@1", "out.pt", "--force",
        ],
    );
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(std::fs::read_to_string(p.join("out.pt")).unwrap(), "first");
    no_temp_files(p);
    assert_eq!(run(p, &["--store", "st", "store", "verify"]).0, Some(0));
}

#[test]
fn a_store_whose_database_is_gone_is_an_error_and_gc_deletes_nothing() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    store_with_two_versions(p);
    let blobs = |p: &Path| walk(&p.join("st/blobs")).len();
    let n = blobs(p);
    assert!(n >= 2);
    std::fs::remove_dir_all(p.join("st/db")).unwrap();
    for args in [
        &["--store", "st", "store", "verify"][..],
        &["--store", "st", "store", "gc"][..],
        &["--store", "st", "versions"][..],
    ] {
        let (code, _, err) = run(p, args);
        assert_eq!(code, Some(1), "{args:?}: {err}");
        assert!(err.contains("has no database"), "{args:?}: {err}");
    }
    assert_eq!(blobs(p), n, "gc removed nothing");
    // A folder never used as a store is made into one by no command that
    // only reads (issue 37, item 13).
    assert_eq!(run(p, &["--store", "fresh", "versions"]).0, Some(1));
    assert!(!p.join("fresh").exists());
}

/// Issue 37, item 13: `vpd --store typo versions` (also `sweep status`,
/// `report`, ...) made `lock`, `blobs/` and `db/` and said "no versions".
#[test]
fn read_only_commands_create_a_store() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    for args in [
        &["versions"][..],
        &["versions", "vqa", "--json"],
        &["lineage", "vqa@1"],
        &["alias", "history", "vqa"],
        &["runs", "--json"],
        &["show", "01a2"],
        &["report", "01a2", "--out", "r.html"],
        &["sweep", "status", "01a2"],
        &["store", "verify"],
        &["store", "export", "vqa@1", "out.ckpt"],
    ] {
        let mut all = vec!["--store", "typo"];
        all.extend_from_slice(args);
        let (code, _, err) = run(p, &all);
        assert_eq!(code, Some(1), "{args:?}: {err}");
        assert!(
            err.contains("no store at") && err.contains("typo"),
            "{args:?}: {err}"
        );
        assert!(!p.join("typo").exists(), "{args:?} made the store");
    }
    assert!(!p.join("r.html").exists() && !p.join("out.ckpt").exists());
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = e.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[test]
fn rollback_and_alias_set_refuse_a_version_whose_checkpoint_is_broken() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    store_with_two_versions(p);
    for v in ["vqa@1", "vqa@2"] {
        assert_eq!(
            run(p, &["--store", "st", "alias", "set", v, "prod"]).0,
            Some(0)
        );
    }
    // Corrupt vqa@1's checkpoint.
    let first = walk(&p.join("st/blobs"))
        .into_iter()
        .find(|f| std::fs::read(f).unwrap() == b"first")
        .unwrap();
    std::fs::write(&first, "tampered").unwrap();
    let (code, _, err) = run(p, &["--store", "st", "rollback", "vqa", "--alias", "prod"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("refusing to move vqa@prod onto vqa@1") && err.contains("corrupt"),
        "{err}"
    );
    let (code, _, err) = run(p, &["--store", "st", "alias", "set", "vqa@1", "other"]);
    assert_eq!(code, Some(1), "{err}");
    // The alias did not move.
    let (_, out, _) = run(p, &["--store", "st", "versions", "vqa", "--json"]);
    let vs: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(vs[1]["aliases"], serde_json::json!(["prod"]));
    // Forced, it moves, with a warning.
    let (code, out, err) = run(
        p,
        &[
            "--store", "st", "rollback", "vqa", "--alias", "prod", "--force",
        ],
    );
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains("vqa@prod: 2 -> 1") && err.contains("warning"),
        "{out} {err}"
    );
    std::fs::remove_file(&first).unwrap();
    let (code, _, err) = run(p, &["--store", "st", "alias", "set", "vqa@1", "again"]);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("missing") || err.contains("not found"),
        "{err}"
    );
}

#[test]
fn bad_llm_settings_are_refused_naming_the_variable_not_a_panic() {
    let d = tempfile::tempdir().unwrap();
    for bad in ["-1", "inf", "NaN", "1e300"] {
        let out = vpd()
            .current_dir(d.path())
            .env("VPD_LLM_BASE_URL", "http://127.0.0.1:9/v1")
            .env("VPD_LLM_TIMEOUT_S", bad)
            .args(["--store", "st", "eval", "--task", "gqa", "--n", "5"])
            .args(["--modules", "oracle", "--generator", "llm", "--limit", "1"])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{bad}: {err}");
        assert!(
            err.contains("VPD_LLM_TIMEOUT_S") && !err.contains("panicked"),
            "{bad}: {err}"
        );
    }
}

#[test]
fn experiments_that_cannot_run_are_refused_before_they_start() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    for (sets, why) in [
        (&["data.gqa_n=0"][..], "`data.gqa_n` is 0"),
        (&["data.gqa_n=1000000000000"][..], "VPD_MAX_SYNTH_N"),
        (&["data.generic_n=0"][..], "`data.generic_n` is 0"),
    ] {
        let mut args = vec!["--store", "st", "run"];
        for s in sets {
            args.extend(["--set", s]);
        }
        let (code, _, err) = run(p, &args);
        assert_eq!(code, Some(2), "{sets:?}: {err}");
        assert!(err.contains(why), "{sets:?}: {err}");
    }
    let list = |n: usize| (0..n).map(|i| i.to_string()).collect::<Vec<_>>().join(", ");
    std::fs::write(
        p.join("big.toml"),
        format!(
            "[sweep]\nseed = [{}]\n\"distill.samples\" = [{}]\n\"distill.dev_samples\" = [{}]\n",
            list(100),
            list(100),
            list(100)
        ),
    )
    .unwrap();
    let (code, _, err) = run(p, &["--store", "st", "run", "big.toml"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("makes 1000000 trials, more than --max-trials 1000"),
        "{err}"
    );
    assert!(!p.join("st").exists(), "nothing ran");
}

#[test]
fn an_interrupted_data_generation_is_removed_at_the_next_start() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    // What a killed `vpd` leaves: a temporary data folder of a process that
    // is gone (i32::MAX is never a live pid).
    let left = p.join("st/data/.tmp-2147483647-0193");
    std::fs::create_dir_all(left.join("images")).unwrap();
    std::fs::write(left.join("images/1.png"), b"half").unwrap();
    let (code, _, err) = run(
        p,
        &[
            "--store",
            "st",
            "eval",
            "--task",
            "gqa",
            "--modules",
            "oracle",
            "--n",
            "5",
            "--limit",
            "2",
        ],
    );
    assert_eq!(code, Some(0), "{err}");
    assert!(!left.exists(), "the interrupted generation was removed");
}

#[test]
fn a_variable_given_twice_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    std::fs::write(
        p.join("e.txt"),
        "A=EVAL(expr='{X} + 1')\nFINAL_RESULT=RESULT(var=A)\n",
    )
    .unwrap();
    let (code, _, err) = run(
        p,
        &["program", "run", "e.txt", "--var", "X=1", "--var", "X=2"],
    );
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("--var X is given twice"), "{err}");
}

/// Issue 23: a version record whose `blob` is shorter than 12 characters
/// panicked `vpd versions` (it sliced the hash). Written here straight into
/// the database, as a damaged or hand-edited store would have it.
#[test]
fn a_version_record_with_a_short_blob_is_listed_not_a_panic() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    store_with_two_versions(p);
    {
        let db = sled::open(p.join("st/db")).unwrap();
        let tree = db.open_tree("moduleversion_record").unwrap();
        let (k, v) = tree.iter().next().unwrap().unwrap();
        let mut rec: serde_json::Value = serde_json::from_slice(&v).unwrap();
        rec["blob"] = "abc".into();
        tree.insert(k, serde_json::to_vec(&rec).unwrap()).unwrap();
        db.flush().unwrap();
    }
    let (code, out, err) = run(p, &["--store", "st", "versions"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains(" abc ") && !err.contains("panicked"),
        "{out}{err}"
    );
    // And verify names the damage.
    let (code, out, _) = run(p, &["--store", "st", "store", "verify"]);
    assert_eq!(code, Some(1), "{out}");
}

/// Issue 37, item 10: a 0-byte NLVR2 file or a GQA `{}` printed
/// `0.0% (n=0)` and stored the evaluation. n=0 is not measured: an error
/// naming the split, and nothing stored.
#[test]
fn an_empty_split_gets_an_accuracy() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    std::fs::create_dir_all(p.join("nlvr2/images")).unwrap();
    std::fs::write(p.join("nlvr2/dev.json"), "").unwrap();
    std::fs::create_dir_all(p.join("gqa/questions")).unwrap();
    std::fs::create_dir_all(p.join("gqa/images")).unwrap();
    std::fs::write(
        p.join("gqa/questions/testdev_balanced_questions.json"),
        "{}",
    )
    .unwrap();
    for (task, root, split) in [
        ("nlvr2", "nlvr2", "dev"),
        ("gqa", "gqa", "testdev_balanced"),
    ] {
        let (code, out, err) = run(
            p,
            &[
                "--store",
                "st",
                "eval",
                "--task",
                task,
                "--data",
                root,
                "--split",
                split,
                "--modules",
                "oracle",
            ],
        );
        assert_eq!(code, Some(1), "{task}: {out} {err}");
        assert!(
            err.contains("has no examples") && err.contains(split),
            "{task}: {err}"
        );
        assert!(!out.contains("0.0%"), "{task}: {out}");
    }
    let store = visprog_distiller::store::Store::open(p.join("st")).unwrap();
    assert!(store.evaluations().unwrap().is_empty(), "nothing stored");
}

/// Issue 37, item 1: `vpd report RUN --out st/db/conf` exited 0 and
/// overwrote the store's database; a device node or a link was replaced by a
/// regular file, an existing file overwritten without `--force`. Every
/// user-named output (report, its plots, trace pages) now follows the rule of
/// `store export`.
#[test]
fn report_out_destroys_what_it_should_refuse() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    store_with_two_versions(p);
    let conf = std::fs::read(p.join("st/db/conf")).unwrap();
    std::fs::write(p.join("old.html"), "mine").unwrap();
    std::os::unix::fs::symlink(p.join("old.html"), p.join("link.html")).unwrap();
    for (args, why) in [
        (
            &["report", "01a2", "--out", "st/db/conf"][..],
            "inside the store",
        ),
        (
            &["report", "01a2", "--out", "/dev/null"],
            "not a regular file",
        ),
        (&["report", "01a2", "--out", "link.html"], "symbolic link"),
        (&["report", "01a2", "--out", "old.html"], "--force"),
        (
            &[
                "report",
                "01a2",
                "--out",
                "new.html",
                "--plots",
                "st/blobs/p",
            ],
            "inside the store",
        ),
        (
            &["show", "01a2", "--example", "e", "--trace", "st/db/conf"],
            "inside the store",
        ),
        (
            &["show", "01a2", "--example", "e", "--trace", "old.html"],
            "--force",
        ),
    ] {
        let mut all = vec!["--store", "st"];
        all.extend_from_slice(args);
        let (code, _, err) = run(p, &all);
        assert_eq!(code, Some(1), "{args:?}: {err}");
        assert!(err.contains(why), "{args:?}: {err}");
    }
    assert!(!p.join("st/blobs/p").exists() && !p.join("new.html").exists());
    assert_eq!(std::fs::read(p.join("st/db/conf")).unwrap(), conf);
    assert_eq!(std::fs::read_to_string(p.join("old.html")).unwrap(), "mine");
    assert!(std::fs::symlink_metadata(p.join("link.html"))
        .unwrap()
        .file_type()
        .is_symlink());
    // A program's trace page: refused over a file, written with --force.
    std::fs::write(
        p.join("one.py"),
        "def execute_command(image):\n    return 1\n",
    )
    .unwrap();
    std::fs::write(p.join("img.png"), crate::common::tiny_png()).unwrap();
    let prog = ["program", "run", "one.py", "--image", "image=img.png"];
    let mut all = vec!["--store", "st"];
    all.extend_from_slice(&prog);
    all.extend_from_slice(&["--trace", "old.html"]);
    let (code, _, err) = run(p, &all);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("--force"), "{err}");
    assert_eq!(std::fs::read_to_string(p.join("old.html")).unwrap(), "mine");
    all.push("--force");
    let (code, _, err) = run(p, &all);
    assert_eq!(code, Some(0), "{err}");
    assert!(std::fs::read_to_string(p.join("old.html"))
        .unwrap()
        .contains("result: 1"));
    no_temp_files(p);
    assert_eq!(run(p, &["--store", "st", "store", "verify"]).0, Some(0));
}

/// `vpd --store st eval --task T --data ROOT --split S --modules oracle`.
fn eval_oracle(p: &Path, task: &str, root: &str, split: &str) -> (Option<i32>, String, String) {
    run(
        p,
        &[
            "--store",
            "st",
            "eval",
            "--task",
            task,
            "--data",
            root,
            "--split",
            split,
            "--modules",
            "oracle",
        ],
    )
}

/// A GQA question of image `img` as the published file has it.
fn gqa_question(img: &str) -> String {
    format!(r#"{{"imageId": "{img}", "question": "Is there a circle?", "answer": "yes"}}"#)
}

/// Issue 37, item 2: a GQA `imageId` of `../../outside/evil` or an absolute
/// path, an NLVR2 identifier with `../` and a `--split` with `../` made vpd
/// read files outside the root (and `data check` said "0 missing"). Ids and
/// split names are names: each such example is an error, named.
#[test]
fn paths_from_data_files_escape_the_dataset_root() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    let png = crate::common::tiny_png();
    std::fs::create_dir_all(p.join("outside")).unwrap();
    std::fs::write(p.join("outside/evil.png"), &png).unwrap();
    std::fs::create_dir_all(p.join("gqa/questions")).unwrap();
    std::fs::create_dir_all(p.join("gqa/images")).unwrap();
    std::fs::write(p.join("gqa/images/1.png"), &png).unwrap();
    let evil = p.join("outside/evil");
    std::fs::write(
        p.join("gqa/questions/val_questions.json"),
        format!(
            r#"{{"q1": {}, "q2": {}, "q3": {}}}"#,
            gqa_question("1"),
            gqa_question("../../outside/evil"),
            gqa_question(evil.to_str().unwrap())
        ),
    )
    .unwrap();
    let (code, out, err) = run(p, &["data", "check", "--task", "gqa", "--root", "gqa"]);
    assert_eq!(code, Some(1), "{out} {err}");
    let all = format!("{out}{err}");
    for q in ["question q2", "question q3"] {
        assert!(
            all.contains(q) && all.contains("not an image name"),
            "{q}: {all}"
        );
    }
    let (code, _, err) = eval_oracle(p, "gqa", "gqa", "val");
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("not an image name"), "{err}");
    // NLVR2: an identifier whose images would be a path.
    std::fs::create_dir_all(p.join("nlvr2/images")).unwrap();
    std::fs::write(
        p.join("nlvr2/dev.json"),
        r#"{"identifier": "dev/../../../outside/x-0-0-0", "sentence": "s", "label": "True"}"#,
    )
    .unwrap();
    let (code, out, err) = run(p, &["data", "check", "--task", "nlvr2", "--root", "nlvr2"]);
    assert_eq!(code, Some(1), "{out} {err}");
    assert!(format!("{out}{err}").contains("line 1"), "{out} {err}");
    // A split that is a path, on the command line and in an experiment file.
    std::fs::write(p.join("outside/x.json"), "").unwrap();
    for split in ["../outside/x", "/etc/passwd", ".."] {
        let (code, _, err) = eval_oracle(p, "nlvr2", "nlvr2", split);
        assert_eq!(code, Some(1), "{split}: {err}");
        assert!(err.contains("is not a split name"), "{split}: {err}");
    }
    let store = visprog_distiller::store::Store::open(p.join("st")).unwrap();
    assert!(store.evaluations().unwrap().is_empty(), "nothing stored");
}

/// Issue 37, item 9: a GQA key repeated in the JSON object, or an NLVR2
/// identifier repeated with conflicting labels, was counted twice (`data
/// check` said 0 errors, eval scored n=3). `data check` reports them; eval
/// refuses, naming the id and which line is kept.
#[test]
fn duplicate_ids_are_counted_twice() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    std::fs::create_dir_all(p.join("gqa/questions")).unwrap();
    std::fs::create_dir_all(p.join("gqa/images")).unwrap();
    std::fs::write(p.join("gqa/images/1.png"), crate::common::tiny_png()).unwrap();
    std::fs::write(
        p.join("gqa/questions/val_questions.json"),
        format!(
            r#"{{"q1": {q}, "q2": {q}, "q1": {q}}}"#,
            q = gqa_question("1")
        ),
    )
    .unwrap();
    let (code, out, err) = run(p, &["data", "check", "--task", "gqa", "--root", "gqa"]);
    assert_eq!(code, Some(1), "{out} {err}");
    assert!(
        format!("{out}{err}").contains("the id q1 appears again"),
        "{out} {err}"
    );
    let (code, _, err) = eval_oracle(p, "gqa", "gqa", "val");
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("q1 appears again"), "{err}");
    std::fs::create_dir_all(p.join("nlvr2/images")).unwrap();
    let line = |label: &str| {
        format!(r#"{{"identifier": "dev-1-0-0", "sentence": "s", "label": "{label}"}}"#)
    };
    std::fs::write(
        p.join("nlvr2/dev.json"),
        format!("{}\n{}\n", line("True"), line("False")),
    )
    .unwrap();
    let (code, out, err) = run(p, &["data", "check", "--task", "nlvr2", "--root", "nlvr2"]);
    assert_eq!(code, Some(1), "{out} {err}");
    let all = format!("{out}{err}");
    assert!(
        all.contains("line 2") && all.contains("first at line 1"),
        "{all}"
    );
    let (code, _, err) = eval_oracle(p, "nlvr2", "nlvr2", "dev");
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("dev-1-0-0 appears again"), "{err}");
}

/// Issue 37, item 12 (second half): a non-UTF-8 NLVR2 line named no line.
#[test]
fn a_non_utf8_nlvr2_line_names_no_line_number() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    std::fs::create_dir_all(p.join("nlvr2/images")).unwrap();
    let mut bytes = br#"{"identifier": "dev-1-0-0", "sentence": "s", "label": "True"}"#.to_vec();
    bytes.extend_from_slice(b"\n{\"identifier\": \"dev-2-0-0\", \"sentence\": \"\xff\xfe\"}\n");
    std::fs::write(p.join("nlvr2/dev.json"), bytes).unwrap();
    let (code, out, err) = run(p, &["data", "check", "--task", "nlvr2", "--root", "nlvr2"]);
    assert_eq!(code, Some(1), "{out} {err}");
    let all = format!("{out}{err}");
    assert!(all.contains("line 2") && all.contains("not UTF-8"), "{all}");
    let (code, _, err) = eval_oracle(p, "nlvr2", "nlvr2", "dev");
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("line 2: not UTF-8"), "{err}");
}

/// Issue 37, item 5: `--set distill.temperature=nan`, `lr=inf`,
/// `replay=nan` or `lr=1e308` passed the "must be positive" checks; the run
/// kept epoch 0, stored a copy of its parent and the gate moved the alias
/// onto it. NaN and inf are refused wherever they are, naming the key; a
/// float outside its range too.
#[test]
fn non_finite_numbers_pass_silently() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    for (set, why) in [
        (
            "distill.temperature=nan",
            "`distill.temperature` is not a finite number",
        ),
        ("distill.lr=inf", "`distill.lr` is not a finite number"),
        (
            "distill.replay=nan",
            "`distill.replay` is not a finite number",
        ),
        (
            "distill.lr=1e308",
            "`distill.lr` = 1e308: must be above 0 and at most 1",
        ),
        (
            "gate.max_drop=-inf",
            "`gate.max_drop` is not a finite number",
        ),
        (
            "distill.replay=-1",
            "`distill.replay` = -1.0: must be at least 0",
        ),
    ] {
        let (code, _, err) = run(p, &["--store", "st", "run", "--set", set]);
        assert_eq!(code, Some(2), "{set}: {err}");
        assert!(err.contains(why), "{set}: {err}");
    }
    std::fs::write(p.join("nan.toml"), "[distill]\nconfidence = nan\n").unwrap();
    let (code, _, err) = run(p, &["--store", "st", "run", "nan.toml"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("`distill.confidence` is not a finite number"),
        "{err}"
    );
    std::fs::write(
        p.join("sweep.toml"),
        "[sweep]\n\"distill.lr\" = [0.001, inf]\n",
    )
    .unwrap();
    let (code, _, err) = run(p, &["--store", "st", "run", "sweep.toml"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("not a finite number"), "{err}");
    assert!(!p.join("st").exists(), "nothing ran");
}

/// A PNG whose header says `w` x `h` (the pixels of a 16x16 one follow:
/// the header is all a size check reads).
fn png_claiming(w: u32, h: u32) -> Vec<u8> {
    fn crc32(bytes: &[u8]) -> u32 {
        let mut c = 0xffff_ffffu32;
        for b in bytes {
            c ^= u32::from(*b);
            for _ in 0..8 {
                c = if c & 1 != 0 {
                    0xedb8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
            }
        }
        !c
    }
    let mut png = crate::common::tiny_png();
    // Signature (8), IHDR length (4), "IHDR" (4), width, height, ...
    png[16..20].copy_from_slice(&w.to_be_bytes());
    png[20..24].copy_from_slice(&h.to_be_bytes());
    let crc = crc32(&png[12..29]);
    png[29..33].copy_from_slice(&crc.to_be_bytes());
    png
}

/// Issue 37, item 4: a 12000x12000 PNG of 420 KB decoded to 0.85 GB; eight
/// in one eval took 6.9 GB. An image past `VPD_MAX_IMAGE_PIXELS` is refused
/// from its header, before anything is decoded, naming the file.
#[test]
fn decoded_images_are_not_bounded() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    std::fs::create_dir_all(p.join("gqa/questions")).unwrap();
    std::fs::create_dir_all(p.join("gqa/images")).unwrap();
    std::fs::write(p.join("gqa/images/1.png"), png_claiming(12000, 12000)).unwrap();
    std::fs::write(p.join("gqa/images/2.png"), crate::common::tiny_png()).unwrap();
    std::fs::write(
        p.join("gqa/questions/val_questions.json"),
        format!(
            r#"{{"q1": {}, "q2": {}}}"#,
            gqa_question("1"),
            gqa_question("2")
        ),
    )
    .unwrap();
    let (code, out, err) = run(p, &["data", "check", "--task", "gqa", "--root", "gqa"]);
    assert_eq!(code, Some(1), "{out} {err}");
    let all = format!("{out}{err}");
    assert!(
        all.contains("1.png") && all.contains("12000x12000 is 144000000 pixels"),
        "{all}"
    );
    // The limit is a setting: the 16x16 image past a limit of 100 pixels.
    std::fs::write(
        p.join("p.txt"),
        "ANSWER0=VQA(image=IMAGE,question='what')\nFINAL=RESULT(var=ANSWER0)\n",
    )
    .unwrap();
    let o = crate::common::vpd()
        .current_dir(p)
        .env("VPD_MAX_IMAGE_PIXELS", "100")
        .args([
            "program",
            "run",
            "p.txt",
            "--image",
            "IMAGE=gqa/images/2.png",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("2.png") && err.contains("VPD_MAX_IMAGE_PIXELS"),
        "{err}"
    );
    let o = crate::common::vpd()
        .current_dir(p)
        .env("VPD_MAX_IMAGE_PIXELS", "many")
        .args([
            "program",
            "run",
            "p.txt",
            "--image",
            "IMAGE=gqa/images/2.png",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("VPD_MAX_IMAGE_PIXELS=many"), "{err}");
}

/// Issue 37, item 8: two runs on one store both pre-trained the missing
/// teacher (@1 and @2) and the `teacher` alias moved while the other run
/// used @1. Now one makes each missing version under the store's lease on
/// it and the other waits and takes it from the store.
#[test]
fn two_runs_on_one_store_duplicate_work_and_move_an_alias_under_each_other() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    let exp = crate::common::tiny_experiment(p, "tiny.toml", "");
    let start = || {
        crate::common::vpd()
            .current_dir(p)
            .args(["--store", "st", "run", exp.to_str().unwrap(), "-q"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (start(), start());
    for c in [a, b] {
        let o = c.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    for module in ["gqa-teacher", "vqa", "loc"] {
        let made: Vec<serde_json::Value> =
            crate::common::vpd_json(p, &["--store", "st", "versions", module, "--json"])
                .as_array()
                .unwrap()
                .iter()
                .filter(|v| v["run"].is_null())
                .cloned()
                .collect();
        assert_eq!(made.len(), 1, "{module} pre-trained once: {made:#?}");
    }
    let runs = crate::common::vpd_json(p, &["--store", "st", "runs", "--json"]);
    let teachers: Vec<String> = runs
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let id = r["id"].as_str().unwrap();
            let shown = crate::common::vpd_json(p, &["--store", "st", "show", id, "--json"]);
            shown["report"]["versions"]["gqa-teacher"].to_string()
        })
        .collect();
    assert_eq!(teachers.len(), 2);
    assert_eq!(teachers[0], teachers[1], "both runs used one teacher");
}

/// Issue 37, item 11: a corrupt `state.json` of a finished trial showed it
/// "interrupted" (and it would run again); a `sweep.json` whose trial list
/// disagrees with its config invented or dropped trials silently. The
/// trial's own store decides whether it finished; corrupt state is an
/// error naming the file; a disagreeing list is an error naming
/// `sweep.json`. (A sweep folder as `vpd run --backend slurm` writes it,
/// with no submission, so that no cluster is needed; the trial runs as its
/// array task would.)
#[test]
fn sweep_state_is_misread() {
    use visprog_distiller::experiment::{sweep, Experiment};
    use visprog_distiller::orchestrate::slurm;
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    let file = crate::common::tiny_experiment(p, "sweep.toml", "[sweep]\nseed = [0, 1]\n");
    let exp = Experiment::load(&file).unwrap();
    let store = visprog_distiller::store::Store::open(p.join("st")).unwrap();
    let id = uuid::Uuid::now_v7().to_string();
    let dir = slurm::sweep_dir(&store, &id);
    std::fs::create_dir_all(dir.join("trials/0")).unwrap();
    std::fs::create_dir_all(dir.join("trials/1")).unwrap();
    let m = slurm::Manifest {
        sweep_id: id.clone(),
        experiment: exp.name.clone(),
        config: serde_json::to_value(&exp).unwrap(),
        store: store.root().canonicalize().unwrap(),
        trials: exp
            .trials()
            .unwrap()
            .iter()
            .map(|(v, _)| sweep::values_of(v))
            .collect(),
        submissions: vec![],
    };
    let manifest = dir.join("sweep.json");
    std::fs::write(&manifest, serde_json::to_vec_pretty(&m).unwrap()).unwrap();
    let (code, _, err) = run(
        p,
        &[
            "--store",
            "st",
            "sweep",
            "trial",
            dir.to_str().unwrap(),
            "--index",
            "0",
            "--seed-store",
            "st",
            "-q",
        ],
    );
    assert_eq!(code, Some(0), "{err}");
    let status = |p: &Path| run(p, &["--store", "st", "sweep", "status", &id, "--json"]);
    let (code, out, err) = status(p);
    assert_eq!(code, Some(0), "{err}");
    let s: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(s["trials"][0]["state"], "finished", "{s:#}");
    // Its state file broken: the trial's own store still says finished.
    std::fs::write(dir.join("trials/0/state.json"), "{\"state\": \"runn").unwrap();
    let (code, out, err) = status(p);
    assert_eq!(code, Some(0), "{err}");
    let s: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(s["trials"][0]["state"], "finished", "{s:#}");
    // A broken state file with no finished run behind it is an error.
    std::fs::write(dir.join("trials/1/state.json"), "not json").unwrap();
    let (code, _, err) = status(p);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("trials/1/state.json") && err.contains("does not read"),
        "{err}"
    );
    std::fs::remove_file(dir.join("trials/1/state.json")).unwrap();
    // A trial list that disagrees with the config.
    let mut edited = m.clone();
    edited.trials.pop();
    std::fs::write(&manifest, serde_json::to_vec_pretty(&edited).unwrap()).unwrap();
    let (code, _, err) = status(p);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("sweep.json") && err.contains("lists 1 trials but its experiment makes 2"),
        "{err}"
    );
    let mut edited = m.clone();
    edited.trials[1].insert("seed".into(), serde_json::json!(7));
    std::fs::write(&manifest, serde_json::to_vec_pretty(&edited).unwrap()).unwrap();
    let (code, _, err) = status(p);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("trial 1 is listed as"), "{err}");
}
