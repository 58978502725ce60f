//! Crash safety: a child process writing versions is killed with SIGKILL at
//! random moments; every time, the store opens, verifies clean, shows every
//! committed version and no version without its blob.
//!
//! The child is this test binary re-run with `VPD_TEST_WRITER_STORE` set, so
//! that `writer_child` becomes a writer that logs `begin N` before each write
//! and `commit N ID` after it.

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use visprog_distiller::store::{NewVersion, Store};

const WRITER_ENV: &str = "VPD_TEST_WRITER_STORE";

/// Not a test on its own: the body of the child process (a no-op unless
/// the parent set `VPD_TEST_WRITER_STORE`).
#[test]
fn writer_child() {
    let Ok(dir) = std::env::var(WRITER_ENV) else {
        return;
    };
    let limit: usize = std::env::var("VPD_TEST_WRITER_COUNT")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(usize::MAX);
    let store = Store::open(&dir).unwrap();
    let mut parent = store.versions(None).unwrap().last().map(|v| v.id);
    let mut i = 0usize;
    while i < limit {
        // 256 KiB checkpoints, distinct content, so the blob write takes a while.
        let seed = format!("{}-{i}", std::process::id());
        let mut bytes = seed.repeat(1 + 262_144 / seed.len()).into_bytes();
        bytes.truncate(262_144);
        println!("begin {i}");
        let v = store
            .save_version(
                NewVersion {
                    module: "vqa".into(),
                    parent,
                    ..Default::default()
                },
                &bytes,
                None,
            )
            .unwrap();
        println!("commit {i} {}", v.id);
        parent = Some(v.id);
        i += 1;
    }
}

fn spawn_writer(dir: &std::path::Path, count: Option<usize>) -> std::process::Child {
    let mut c = Command::new(std::env::current_exe().unwrap());
    c.args([
        "--exact",
        "store_crash::writer_child",
        "--nocapture",
        "--test-threads",
        "1",
    ])
    .env(WRITER_ENV, dir)
    .stdout(Stdio::piped())
    .stderr(Stdio::null());
    if let Some(n) = count {
        c.env("VPD_TEST_WRITER_COUNT", n.to_string());
    }
    c.spawn().unwrap()
}

/// A small deterministic generator for kill delays.
fn next(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

#[test]
fn sigkill_at_random_moments_leaves_a_consistent_store() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    Store::open(&root).unwrap();
    let mut committed: HashSet<String> = HashSet::new();
    let mut mid_write = 0;
    let mut rng = 0x9E37_79B9_7F4A_7C15u64;
    let rounds: usize = std::env::var("VPD_TEST_CRASH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(24);
    for round in 0..rounds {
        let mut child = spawn_writer(&root, None);
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if line.starts_with("begin") || line.starts_with("commit") {
                    let _ = tx.send(line);
                }
            }
        });
        // Let it commit a random number (0..3) of versions, then kill it.
        let target = (next(&mut rng) % 3) as usize;
        let mut begins = 0;
        let start = Instant::now();
        let mut lines: Vec<String> = Vec::new();
        while let Ok(line) = rx.recv_timeout(Duration::from_secs(20)) {
            lines.push(line.clone());
            if line.starts_with("begin") {
                begins += 1;
                if begins > target {
                    break;
                }
            }
            assert!(start.elapsed() < Duration::from_secs(30), "writer too slow");
        }
        // Mostly within the write (0-3 ms after `begin`), sometimes later
        // (up to 40 ms: after a commit, or in the next write's sled open).
        let r = next(&mut rng);
        let micros = if r.is_multiple_of(4) {
            r % 40_000
        } else {
            r % 3_000
        };
        std::thread::sleep(Duration::from_micros(micros));
        child.kill().unwrap();
        child.wait().unwrap();
        reader.join().unwrap();
        lines.extend(rx.try_iter());
        let mut last = String::new();
        for l in &lines {
            if let Some(rest) = l.strip_prefix("commit ") {
                committed.insert(rest.split(' ').nth(1).unwrap().to_string());
            }
            last = l.clone();
        }
        if last.is_empty() || last.starts_with("begin") {
            mid_write += 1;
        }

        // The store opens, verifies clean, and shows every committed version.
        let store = Store::open(&root).unwrap_or_else(|e| panic!("round {round}: {e}"));
        let problems = store.verify().unwrap();
        assert!(problems.is_empty(), "round {round}: {problems:?}");
        let visible: HashSet<String> = store
            .versions(None)
            .map(|v| v.into_iter().map(|v| v.id.to_string()).collect())
            .unwrap_or_default();
        for id in &committed {
            assert!(visible.contains(id), "round {round}: committed {id} lost");
        }
        for v in store.versions(None).unwrap_or_default() {
            store
                .blobs()
                .get(&v.blob)
                .expect("no version without its blob");
        }
    }
    eprintln!(
        "{rounds} kills, {mid_write} mid-write, {} versions committed",
        committed.len()
    );
    assert!(
        mid_write * 2 >= rounds,
        "only {mid_write} of {rounds} kills were mid-write"
    );
}

#[test]
fn versions_answers_while_another_process_writes() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    Store::open(&root).unwrap();
    let mut child = spawn_writer(&root, None);
    let mut seen = Vec::new();
    for _ in 0..15 {
        let out = crate::common::vpd()
            .args(["--store", root.to_str().unwrap(), "versions", "--json"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        seen.push(v.as_array().unwrap().len());
    }
    let writer_running = child.try_wait().unwrap().is_none();
    child.kill().ok();
    child.wait().unwrap();
    assert!(
        writer_running,
        "the writer was still writing during the reads"
    );
    assert!(seen.windows(2).all(|w| w[0] <= w[1]), "{seen:?}");
    assert!(
        seen.last() > seen.first(),
        "versions grew while read: {seen:?}"
    );
}
