//! The store through the real `vpd` binary.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;
use visprog_distiller::store::{Pipeline, Store, Tally};

use crate::common::{vpd, vpd_in};

fn ok(dir: &Path, args: &[&str]) -> String {
    let out = vpd_in(dir, args);
    assert!(
        out.status.success(),
        "vpd {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn json(dir: &Path, args: &[&str]) -> Value {
    serde_json::from_str(&ok(dir, args)).expect("one JSON document")
}

fn fail(dir: &Path, args: &[&str]) -> String {
    let out = vpd_in(dir, args);
    assert_eq!(
        out.status.code(),
        Some(1),
        "vpd {args:?} should fail with 1"
    );
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(!err.contains("panicked"), "{err}");
    err
}

/// Imports `n` versions of `module`, each the child of the previous.
fn chain(dir: &Path, module: &str, n: usize) {
    for i in 1..=n {
        let f = dir.join(format!("{module}-{i}.bin"));
        std::fs::write(&f, format!("{module} checkpoint {i}")).unwrap();
        let mut args = vec!["store", "import", module, f.to_str().unwrap()];
        let parent = format!("{module}@{}", i - 1);
        if i > 1 {
            args.extend(["--parent", &parent]);
        }
        ok(dir, &args);
    }
}

#[test]
fn import_list_export_round_trip() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    std::fs::write(p.join("ck.pt"), b"weights").unwrap();
    std::fs::write(p.join("ck.json"), b"{\"input\": 64}").unwrap();
    let v = json(
        p,
        &[
            "store",
            "import",
            "vqa",
            "ck.pt",
            "--sidecar",
            "ck.json",
            "--json",
        ],
    );
    assert_eq!(v["version"], 1);
    let list = json(p, &["versions", "--json"]);
    let first = &list[0];
    for key in [
        "module",
        "version",
        "id",
        "parent",
        "aliases",
        "blob",
        "created_at",
    ] {
        assert!(first.get(key).is_some(), "missing {key}");
    }
    assert_eq!(first["module"], "vqa");
    assert_eq!(first["blob"].as_str().unwrap().len(), 64);
    ok(p, &["store", "export", "vqa@1", "out.pt"]);
    assert_eq!(std::fs::read(p.join("out.pt")).unwrap(), b"weights");
    assert_eq!(
        std::fs::read(p.join("out.pt.sidecar")).unwrap(),
        b"{\"input\": 64}"
    );
}

#[test]
fn identical_checkpoints_are_stored_once() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    std::fs::write(p.join("a"), b"same bytes").unwrap();
    ok(p, &["store", "import", "vqa", "a"]);
    ok(p, &["store", "import", "loc", "a"]);
    let list = json(p, &["versions", "--json"]);
    assert_eq!(list.as_array().unwrap().len(), 2);
    assert_eq!(list[0]["blob"], list[1]["blob"]);
    let blobs = Store::open(p.join("store"))
        .unwrap()
        .blobs()
        .list()
        .unwrap();
    assert_eq!(blobs.len(), 1);
}

#[test]
fn three_rollbacks_walk_three_moves_back_and_history_has_six_entries() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    chain(p, "vqa", 3);
    ok(p, &["alias", "set", "vqa@1", "prod"]);
    ok(
        p,
        &["alias", "set", "vqa@2", "prod", "--reason", "better on gqa"],
    );
    ok(p, &["alias", "set", "vqa@3", "prod"]);
    let at = |p: &Path| -> Option<u64> {
        let list = json(p, &["versions", "vqa", "--json"]);
        list.as_array()
            .unwrap()
            .iter()
            .find(|v| v["aliases"].as_array().unwrap().iter().any(|a| a == "prod"))
            .map(|v| v["version"].as_u64().unwrap())
    };
    assert_eq!(at(p), Some(3));
    ok(p, &["rollback", "vqa", "--alias", "prod"]);
    assert_eq!(at(p), Some(2));
    ok(p, &["rollback", "vqa", "--alias", "prod"]);
    assert_eq!(at(p), Some(1));
    ok(p, &["rollback", "vqa", "--alias", "prod"]);
    assert_eq!(at(p), None, "undoing the set that created it removes it");
    let err = fail(p, &["rollback", "vqa", "--alias", "prod"]);
    assert!(err.contains("nothing to roll back"), "{err}");

    let h = json(p, &["alias", "history", "vqa", "prod", "--json"]);
    let kinds: Vec<&str> = h
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        ["set", "set", "set", "rollback", "rollback", "rollback"]
    );
    assert_eq!(h[1]["reason"], "better on gqa");
    assert_eq!(h[3]["undoes"], h[2]["id"]);
    assert_eq!(h[5]["undoes"], h[0]["id"]);
}

#[test]
fn rollback_to_a_named_version_and_then_undo_the_latest_set() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    chain(p, "vqa", 3);
    ok(p, &["alias", "set", "vqa@2", "prod"]);
    ok(p, &["alias", "set", "vqa@3", "prod"]);
    let e = json(
        p,
        &["rollback", "vqa", "--alias", "prod", "--to", "1", "--json"],
    );
    assert_eq!(e["kind"], "rollback");
    assert!(e["undoes"].is_null());
    let v1 = json(p, &["versions", "vqa", "--json"])[0]["id"].clone();
    assert_eq!(e["to"], v1);
    // A plain rollback still undoes the latest set (2 -> 3): back to 2.
    let e = json(p, &["rollback", "vqa", "--alias", "prod", "--json"]);
    let v2 = json(p, &["versions", "vqa", "--json"])[1]["id"].clone();
    assert_eq!(e["to"], v2);
}

#[test]
fn lineage_shows_ancestors_and_descendants() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    chain(p, "vqa", 3);
    std::fs::write(p.join("branch"), b"branch").unwrap();
    ok(
        p,
        &["store", "import", "vqa", "branch", "--parent", "vqa@1"],
    );
    let l = json(p, &["lineage", "vqa@2", "--json"]);
    assert_eq!(l["ancestors"].as_array().unwrap().len(), 1);
    assert_eq!(l["ancestors"][0]["number"], 1);
    assert_eq!(l["tree"]["version"]["number"], 2);
    assert_eq!(l["tree"]["children"][0]["version"]["number"], 3);
    let l = json(p, &["lineage", "vqa@1", "--json"]);
    let kids: Vec<u64> = l["tree"]["children"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["version"]["number"].as_u64().unwrap())
        .collect();
    assert_eq!(kids, [2, 4]);
    let text = ok(p, &["lineage", "vqa@1"]);
    assert!(text.contains("vqa@3") && text.contains("vqa@4"), "{text}");
}

#[test]
fn unknown_module_version_alias_and_run_are_named() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    chain(p, "vqa", 2);
    let e = fail(p, &["lineage", "loc@1"]);
    assert!(
        e.contains("unknown module `loc`") && e.contains("vqa"),
        "{e}"
    );
    let e = fail(p, &["lineage", "vqa@7"]);
    assert!(e.contains("`7`") && e.contains("1..2"), "{e}");
    let e = fail(p, &["alias", "set", "vqa@nope", "prod"]);
    assert!(e.contains("`nope`"), "{e}");
    let e = fail(p, &["show", "0123"]);
    assert!(e.contains("no run matches `0123`"), "{e}");
    let e = fail(p, &["versions", "loc"]);
    assert!(e.contains("unknown module `loc`"), "{e}");
    let e = fail(p, &["store", "import", "vqa", "does-not-exist.pt"]);
    assert!(e.contains("does-not-exist.pt"), "{e}");
    let e = fail(p, &["store", "import", "9bad", "vqa-1.bin"]);
    assert!(e.contains("invalid module `9bad`"), "{e}");
    assert_eq!(vpd_in(p, &["lineage", "vqa"]).status.code(), Some(2));
}

fn corrupt_first_blob(p: &Path) -> String {
    let list = json(p, &["versions", "--json"]);
    let hash = list[0]["blob"].as_str().unwrap().to_string();
    let path = Store::open(p.join("store")).unwrap().blobs().path(&hash);
    std::fs::write(&path, b"bit rot").unwrap();
    hash
}

#[test]
fn a_corrupt_blob_is_caught_by_verify_and_by_export() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    chain(p, "vqa", 2);
    assert!(json(p, &["store", "verify", "--json"])["ok"] == true);
    let hash = corrupt_first_blob(p);
    let out = vpd_in(p, &["store", "verify", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["ok"], false);
    let msg = v["problems"][0]["message"].as_str().unwrap();
    assert!(msg.contains("corrupt") && msg.contains(&hash), "{msg}");
    assert!(v["problems"][0]["at"].as_str().unwrap().contains("vqa@1"));
    let e = fail(p, &["store", "export", "vqa@1", "x.pt"]);
    assert!(e.contains("corrupt"), "{e}");
    assert!(
        !p.join("x.pt").exists(),
        "nothing written from a corrupt blob"
    );
}

#[test]
fn a_newer_schema_is_refused_naming_both_versions() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    chain(p, "vqa", 1);
    {
        let db = sled::open(p.join("store/db")).unwrap();
        db.open_tree("meta")
            .unwrap()
            .insert("schema_version", &99u32.to_be_bytes())
            .unwrap();
        db.flush().unwrap();
    }
    let e = fail(p, &["versions"]);
    assert!(
        e.contains("schema version 99") && e.contains("this vpd's 1"),
        "{e}"
    );
}

#[test]
fn a_locked_store_is_a_clear_error_after_a_short_wait() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    chain(p, "vqa", 1);
    let db = sled::open(p.join("store/db")).unwrap(); // holds the lock
    let out = vpd()
        .current_dir(p)
        .env("VPD_STORE_LOCK_WAIT_MS", "300")
        .args(["versions"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(e.contains("locked by another process"), "{e}");
    drop(db);
    ok(p, &["versions"]);
}

#[test]
fn a_garbage_database_is_an_error_not_a_panic() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    std::fs::create_dir_all(p.join("store/db")).unwrap();
    std::fs::write(p.join("store/db/conf"), b"\xff\xfe garbage").unwrap();
    std::fs::write(p.join("store/db/db"), vec![0xAB; 4096]).unwrap();
    let e = fail(p, &["versions"]);
    assert!(e.contains("store"), "{e}");
}

#[test]
fn gc_removes_only_unreferenced_blobs() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    chain(p, "vqa", 1);
    let store = Store::open(p.join("store")).unwrap();
    let orphan = store.blobs().put(b"orphan from a killed writer").unwrap();
    // Age the orphan past the grace period.
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    let f = std::fs::File::options()
        .write(true)
        .open(store.blobs().path(&orphan))
        .unwrap();
    f.set_modified(old).unwrap();
    let young = store
        .blobs()
        .put(b"a writer is about to reference me")
        .unwrap();
    let r = json(p, &["store", "gc", "--json"]);
    assert_eq!(r["removed"], 1);
    assert_eq!(r["kept_recent"], 1);
    assert!(!store.blobs().path(&orphan).exists());
    assert!(store.blobs().path(&young).exists());
    assert!(json(p, &["store", "verify", "--json"])["ok"] == true);
    ok(p, &["store", "export", "vqa@1", "back.pt"]);
}

fn pipeline(task: &str, vqa: &str, loc: &str) -> Pipeline {
    Pipeline {
        task: task.into(),
        split: "test".into(),
        generator: "annotated".into(),
        dataset: "synthetic-1".into(),
        modules: BTreeMap::from([("VQA".into(), vqa.into()), ("LOC".into(), loc.into())]),
    }
}

fn tally(n: u64, correct: u64) -> Tally {
    Tally { n, correct }
}

#[test]
fn compare_and_regress_use_pipelines_that_differ_only_in_that_module() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    chain(p, "vqa", 2);
    chain(p, "loc", 1);
    let store = Store::open(p.join("store")).unwrap();
    let id = |m: &str, n: &str| {
        store
            .resolve(&format!("{m}@{n}").parse().unwrap())
            .unwrap()
            .id
            .to_string()
    };
    let (v1, v2, l1) = (id("vqa", "1"), id("vqa", "2"), id("loc", "1"));
    let types = |a: u64, b: u64| {
        BTreeMap::from([
            ("query".to_string(), tally(100, a)),
            ("verify".to_string(), tally(100, b)),
        ])
    };
    store
        .record_evaluation(
            pipeline("gqa", &v1, &l1),
            tally(200, 120),
            types(50, 70),
            None,
        )
        .unwrap();
    store
        .record_evaluation(
            pipeline("gqa", &v2, &l1),
            tally(200, 150),
            types(70, 80),
            None,
        )
        .unwrap();
    store
        .record_evaluation(
            pipeline("nlvr2", &v1, &l1),
            tally(300, 210),
            BTreeMap::new(),
            None,
        )
        .unwrap();
    store
        .record_evaluation(
            pipeline("nlvr2", &v2, &l1),
            tally(300, 180),
            BTreeMap::new(),
            None,
        )
        .unwrap();
    // A pipeline that differs elsewhere (the oracle LOC) must not be matched.
    store
        .record_evaluation(
            pipeline("gqa", &v2, "oracle"),
            tally(200, 190),
            BTreeMap::new(),
            None,
        )
        .unwrap();

    let c = json(p, &["compare", "vqa@1", "vqa@2", "--json"]);
    let rows = c["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["task"], "gqa");
    assert!((rows[0]["diff_points"].as_f64().unwrap() - 15.0).abs() < 1e-9);
    assert!((rows[0]["by_type"]["query"][2].as_f64().unwrap() - 20.0).abs() < 1e-9);
    assert_eq!(rows[1]["task"], "nlvr2");
    assert!((rows[1]["diff_points"].as_f64().unwrap() + 10.0).abs() < 1e-9);
    let only = json(
        p,
        &["compare", "vqa@1", "vqa@2", "--tasks", "gqa", "--json"],
    );
    assert_eq!(only["rows"].as_array().unwrap().len(), 1);
    let text = ok(p, &["compare", "vqa@1", "vqa@2"]);
    assert!(text.contains("gqa") && text.contains("+15.0"), "{text}");

    // vqa@2 gains on GQA but loses 10 points on NLVR2.
    let out = vpd_in(p, &["regress", "vqa@2", "--max-drop", "2", "--json"]);
    assert_eq!(out.status.code(), Some(1), "the gate fails");
    let g: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(g["passed"], false);
    let bad: Vec<&str> = g["rows"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["passed"] == false)
        .map(|r| r["task"].as_str().unwrap())
        .collect();
    assert_eq!(bad, ["nlvr2"]);
    let text = String::from_utf8(vpd_in(p, &["regress", "vqa@2"]).stdout).unwrap();
    assert!(
        text.contains("nlvr2") && text.contains("REGRESSION"),
        "{text}"
    );
    ok(p, &["regress", "vqa@2", "--max-drop", "10"]);
    // The other direction gains on NLVR2, loses 15 on GQA.
    let out = vpd_in(
        p,
        &["regress", "vqa@1", "--against", "vqa@2", "--max-drop", "20"],
    );
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn compare_refuses_pipelines_that_differ_elsewhere_naming_the_difference() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    chain(p, "vqa", 2);
    chain(p, "loc", 2);
    let store = Store::open(p.join("store")).unwrap();
    let id = |m: &str, n: &str| {
        store
            .resolve(&format!("{m}@{n}").parse().unwrap())
            .unwrap()
            .id
            .to_string()
    };
    store
        .record_evaluation(
            pipeline("gqa", &id("vqa", "1"), &id("loc", "1")),
            tally(10, 5),
            BTreeMap::new(),
            None,
        )
        .unwrap();
    store
        .record_evaluation(
            pipeline("gqa", &id("vqa", "2"), &id("loc", "2")),
            tally(10, 6),
            BTreeMap::new(),
            None,
        )
        .unwrap();
    let e = fail(p, &["compare", "vqa@1", "vqa@2"]);
    assert!(
        e.contains("differ only in that module") && e.contains("module LOC"),
        "{e}"
    );
    let e = fail(p, &["compare", "vqa@1", "loc@1"]);
    assert!(e.contains("different modules"), "{e}");
}

#[test]
fn a_run_whose_process_is_gone_shows_as_interrupted() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    let store = Store::open(p.join("store")).unwrap();
    let mut run = store
        .start_run(visprog_distiller::store::NewRun {
            experiment: "quickstart".into(),
            seed: 3,
            ..Default::default()
        })
        .unwrap();
    // This test process is alive: running.
    let runs = json(p, &["runs", "--json"]);
    assert_eq!(runs[0]["status"], "running");
    // Pretend the run belonged to a process that has exited.
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    run.pid = pid;
    {
        let db = sled::open(p.join("store/db")).unwrap();
        db.open_tree("run_record")
            .unwrap()
            .insert(run.id.as_bytes(), serde_json::to_vec(&run).unwrap())
            .unwrap();
        db.flush().unwrap();
    }
    let runs = json(p, &["runs", "--json"]);
    assert_eq!(runs[0]["status"], "interrupted");
    assert_eq!(runs[0]["recorded_status"], "running");
    let prefix = &run.id.simple().to_string()[..10];
    let shown = json(p, &["show", prefix, "--json"]);
    assert_eq!(shown["status"], "interrupted");
    assert_eq!(shown["experiment"], "quickstart");
    assert!(ok(p, &["runs"]).contains("interrupted"));
}

#[test]
fn merge_brings_versions_runs_and_evaluations_home_once() {
    let home = tempfile::tempdir().unwrap();
    let away = tempfile::tempdir().unwrap();
    chain(home.path(), "vqa", 1);
    chain(away.path(), "vqa", 2);
    let a = Store::open(away.path().join("store")).unwrap();
    let run = a.start_run(Default::default()).unwrap();
    let v2 = a.resolve(&"vqa@2".parse().unwrap()).unwrap();
    a.record_evaluation(
        pipeline("gqa", &v2.id.to_string(), "oracle"),
        tally(4, 3),
        BTreeMap::new(),
        Some(run.id),
    )
    .unwrap();
    let other = away.path().join("store");
    let r = json(
        home.path(),
        &["store", "merge", other.to_str().unwrap(), "--json"],
    );
    assert_eq!(r["versions"], 2);
    assert_eq!(r["runs"], 1);
    assert_eq!(r["evaluations"], 1);
    let list = json(home.path(), &["versions", "vqa", "--json"]);
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 3);
    // Renumbered here; identity and lineage kept by id.
    assert_eq!(list[2]["id"], v2.id.to_string());
    assert_eq!(list[2]["version"], 3);
    assert_eq!(list[2]["parent"], list[1]["id"]);
    let again = json(
        home.path(),
        &["store", "merge", other.to_str().unwrap(), "--json"],
    );
    assert_eq!(again["versions"], 0);
    assert_eq!(again["already_present"], 4);
    assert!(json(home.path(), &["store", "verify", "--json"])["ok"] == true);
    let e = fail(home.path(), &["store", "merge", "nowhere"]);
    assert!(e.contains("nowhere"), "{e}");
}

#[test]
fn bench_store_reports_every_figure_against_its_baseline() {
    let d = tempfile::tempdir().unwrap();
    let v = json(
        d.path(),
        &[
            "bench",
            "store",
            "--versions",
            "50",
            "--mb",
            "1",
            "--reps",
            "2",
            "--json",
        ],
    );
    for key in [
        "commit_ms",
        "plain_write_fsync_ms",
        "load_by_alias_ms",
        "plain_read_ms",
        "lineage_ms",
        "list_ms",
    ] {
        assert!(v[key]["n"].as_u64().unwrap() >= 2, "{key}");
        assert!(v[key]["median"].as_f64().unwrap() > 0.0, "{key}");
    }
    assert_eq!(v["lineage_versions"], 50);
    assert_eq!(v["checkpoint_bytes"], 1_000_000);
    // 2 distinct 1 MB checkpoints + 50 small ones, each stored once.
    let blobs = v["unique_blob_bytes"].as_u64().unwrap();
    assert_eq!(blobs, 2 * 1_000_000 + 50 * 256);
    assert!(v["store_bytes_on_disk"].as_u64().unwrap() >= blobs);
}

/// Issue 37, item 7: a run merged from another store showed that store's
/// version numbers ("vqa@2 from vqa@1", the alias moved to @2) where its
/// own versions are @3 and @2 here. `show` (and `report`) resolve the
/// report's versions by id.
#[test]
fn provenance_after_store_merge_is_wrong() {
    let home = tempfile::tempdir().unwrap();
    let away = tempfile::tempdir().unwrap();
    chain(home.path(), "vqa", 1);
    chain(away.path(), "vqa", 2);
    let a = Store::open(away.path().join("store")).unwrap();
    let run = a.start_run(Default::default()).unwrap();
    let v1 = a.resolve(&"vqa@1".parse().unwrap()).unwrap();
    let v2 = a.resolve(&"vqa@2".parse().unwrap()).unwrap();
    let report = serde_json::json!({
        "versions": {"vqa_parent": "vqa@1", "vqa": "vqa@2"},
        "version_ids": {"vqa_parent": v1.id, "vqa": v2.id},
        "aliases_moved": ["vqa@2"],
        "pretrained": [],
    });
    a.finish_run_with_report(
        run.id,
        visprog_distiller::store::RunStatus::Finished,
        report.to_string().as_bytes(),
    )
    .unwrap();
    drop(a);
    let other = away.path().join("store");
    json(
        home.path(),
        &["store", "merge", other.to_str().unwrap(), "--json"],
    );
    let shown = json(home.path(), &["show", &run.id.to_string(), "--json"]);
    assert_eq!(shown["report"]["versions"]["vqa"], "vqa@3", "{shown:#}");
    assert_eq!(shown["report"]["versions"]["vqa_parent"], "vqa@2");
    assert_eq!(shown["report"]["aliases_moved"][0], "vqa@3");
    let recipes: Vec<&str> = shown["recipes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["version"].as_str().unwrap())
        .collect();
    assert!(
        recipes.contains(&"vqa@3") && recipes.contains(&"vqa@2"),
        "{recipes:?}"
    );
    assert!(
        !recipes.contains(&"vqa@1"),
        "home's own vqa@1 is not this run's: {recipes:?}"
    );
    // In the store it came from, the same numbers as before.
    let there = json(away.path(), &["show", &run.id.to_string(), "--json"]);
    assert_eq!(there["report"]["versions"]["vqa"], "vqa@2");
}
