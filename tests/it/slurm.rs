//! Sweeps on a real Slurm: a single-node cluster on loopback started by
//! `scripts/slurm.sh` for the test's length (Debian's Slurm and munge;
//! root and apt-get to install them), stopped by PID.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{in_ci, require, tiny_experiment, vpd, TINY};

/// The cluster for one test; stopped (by the PIDs the script kept) on drop.
struct Cluster {
    dir: PathBuf,
    conf: String,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(script())
            .arg("stop")
            .arg(&self.dir)
            .status();
    }
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/slurm.sh")
}

/// Installs (when missing and possible) and starts the cluster; `None`
/// with a notice where that cannot be done here (a failure under CI=true).
fn cluster(dir: &Path) -> Option<Cluster> {
    let _ = Command::new("bash").arg(script()).arg("install").status();
    let out = Command::new("bash")
        .arg(script())
        .arg("start")
        .arg(dir)
        .output()
        .expect("run scripts/slurm.sh");
    let conf = String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("export SLURM_CONF=").map(str::to_string));
    let started = match (out.status.success(), conf) {
        (true, Some(conf)) => Some(Cluster {
            dir: dir.to_path_buf(),
            conf,
        }),
        _ => {
            eprintln!(
                "scripts/slurm.sh start: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            // Whatever did start is stopped.
            let _ = Command::new("bash")
                .arg(script())
                .arg("stop")
                .arg(dir)
                .status();
            None
        }
    };
    require(
        "a Slurm cluster on loopback (scripts/slurm.sh: root, apt-get and Debian's slurmctld, slurmd, slurm-client, munge)",
        started,
    )
}

impl Cluster {
    /// `vpd --store st ARGS...` in `dir` with this cluster's SLURM_CONF.
    fn vpd(&self, dir: &Path, args: &[&str]) -> std::process::Output {
        vpd()
            .current_dir(dir)
            .env("SLURM_CONF", &self.conf)
            .args(["--store", "st"])
            .args(args)
            .output()
            .expect("spawn vpd")
    }

    fn json(&self, dir: &Path, args: &[&str]) -> Value {
        let out = self.vpd(dir, args);
        assert!(
            out.status.success(),
            "vpd {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("vpd printed JSON")
    }

    fn scancel(&self, task: &str) {
        let ok = Command::new("scancel")
            .env("SLURM_CONF", &self.conf)
            .arg(task)
            .status()
            .expect("scancel")
            .success();
        assert!(ok, "scancel {task}");
    }

    /// Polls `vpd sweep status` until `done` says so (or fails after 240 s,
    /// showing the last status and the logs).
    fn wait(&self, dir: &Path, sweep: &str, done: impl Fn(&Value) -> bool) -> Value {
        let start = Instant::now();
        loop {
            let s = self.json(dir, &["sweep", "status", sweep, "--json"]);
            if done(&s) {
                return s;
            }
            if start.elapsed() > Duration::from_secs(240) {
                let logs: Vec<String> = s["trials"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|t| {
                        std::fs::read_to_string(t["log"].as_str().unwrap()).unwrap_or_default()
                    })
                    .collect();
                panic!(
                    "sweep {sweep} did not get there in 240 s: {s:#}\nlogs:\n{}",
                    logs.join("\n---\n")
                );
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

fn states(s: &Value) -> Vec<String> {
    s["trials"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["state"].as_str().unwrap().to_string())
        .collect()
}

fn settled(s: &Value) -> bool {
    states(s)
        .iter()
        .all(|x| !matches!(x.as_str(), "pending" | "running" | "unsubmitted"))
}

fn all_finished(s: &Value) -> bool {
    states(s).iter().all(|x| x == "finished")
}

fn run_ids(collect: &Value) -> Vec<String> {
    let mut ids: Vec<String> = collect["configurations"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|c| c["trials"].as_array().unwrap().iter())
        .map(|t| t["run_id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids
}

#[test]
fn a_sweep_runs_on_slurm_is_collected_and_resubmits_only_what_did_not_finish() {
    let d = tempfile::tempdir().unwrap();
    let Some(c) = cluster(&d.path().join("cluster")) else {
        return;
    };
    let dir = d.path();
    tiny_experiment(dir, "sweep.toml", "[sweep]\nseed = [0, 1, 2]\n");

    // A bad sbatch option is a usage error before anything is made.
    let out = c.vpd(
        dir,
        &[
            "run",
            "sweep.toml",
            "--backend",
            "slurm",
            "--sbatch-arg",
            "account",
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = c.vpd(dir, &["run", "sweep.toml", "--partition", "debug"]);
    assert_eq!(out.status.code(), Some(2));

    // Submitted: the shared work done here, one array job of 3 tasks.
    let sub = c.json(
        dir,
        &[
            "run",
            "sweep.toml",
            "--backend",
            "slurm",
            "--cpus-per-task",
            "1",
            "--max-parallel",
            "2",
            "--json",
        ],
    );
    assert_eq!(sub["submitted"], 3, "{sub:#}");
    assert_eq!(sub["job_ids"].as_array().unwrap().len(), 1);
    let job = sub["job_ids"][0].as_str().unwrap().to_string();
    let sweep = sub["sweep_id"].as_str().unwrap().to_string();
    let script = std::fs::read_to_string(sub["script"].as_str().unwrap()).unwrap();
    assert!(script.contains("#SBATCH --array=0,1,2%2"), "{script}");
    assert!(script.contains("#SBATCH --cpus-per-task=1"), "{script}");
    // Pre-training happened once, before submission: the main store has
    // the base versions, and no trial pre-trains.
    let versions = c.json(dir, &["versions", "--json"]);
    let base = versions.as_array().unwrap().len();
    assert!(base >= 3, "{versions:#}");

    let s = c.wait(dir, &sweep, all_finished);
    for (i, t) in s["trials"].as_array().unwrap().iter().enumerate() {
        assert_eq!(t["job"], format!("{job}_{i}"));
        let log = std::fs::read_to_string(t["log"].as_str().unwrap()).unwrap();
        assert!(log.contains(&format!("Slurm task {job}_{i}")), "{log}");
        assert!(!log.contains("pre-training"), "a trial pre-trained:\n{log}");
    }

    // Collected: the summary is the trials' own records.
    let col = c.json(dir, &["sweep", "collect", &sweep, "--json"]);
    assert_eq!(col["collected"], 3, "{col:#}");
    assert_eq!(col["sweep_id"], sweep.as_str());
    let conf = &col["configurations"][0];
    let trials = conf["trials"].as_array().unwrap();
    assert_eq!(trials.len(), 3);
    let mut gains = Vec::new();
    for t in trials {
        let run = c.json(dir, &["show", t["run_id"].as_str().unwrap(), "--json"]);
        let run = if run.get("run").is_some() {
            run["run"].clone()
        } else {
            run
        };
        assert_eq!(run["status"], "finished", "{run:#}");
        assert_eq!(run["sweep"], sweep.as_str());
        assert_eq!(run["slurm"]["array_job_id"], job.as_str(), "{run:#}");
        let seed = t["values"]["seed"].as_u64().unwrap();
        assert_eq!(run["slurm"]["array_task_id"], seed, "{run:#}");
        assert_eq!(run["threads"], 1);
        gains.push(
            t["report"]["tasks"]["gqa"]["difference"]["points"]
                .as_f64()
                .unwrap(),
        );
    }
    let mean = gains.iter().sum::<f64>() / 3.0;
    let got = conf["tasks"]["gqa"]["gain"]["mean"].as_f64().unwrap();
    assert!(
        (mean - got).abs() < 1e-9,
        "summary gain {got}, trials {gains:?}"
    );
    let verify = c.json(dir, &["store", "verify", "--json"]);
    assert_eq!(
        verify["problems"].as_array().map(Vec::len),
        Some(0),
        "{verify:#}"
    );
    let after = c
        .json(dir, &["versions", "--json"])
        .as_array()
        .unwrap()
        .len();
    assert_eq!(
        after,
        base + 3,
        "one distilled version per trial comes home"
    );

    // Idempotent: collecting again merges nothing and says the same.
    let again = c.json(dir, &["sweep", "collect", &sweep, "--json"]);
    assert_eq!(again["collected"], 0);
    assert_eq!(run_ids(&again), run_ids(&col));
    assert_eq!(again["configurations"][0]["tasks"], conf["tasks"]);
    assert_eq!(
        c.json(dir, &["versions", "--json"])
            .as_array()
            .unwrap()
            .len(),
        after
    );
    // Submitting again: nothing left.
    let none = c.json(
        dir,
        &[
            "run",
            "sweep.toml",
            "--backend",
            "slurm",
            "--cpus-per-task",
            "1",
            "--json",
        ],
    );
    assert_eq!(none["submitted"], 0, "{none:#}");
    assert!(none["job_ids"].as_array().unwrap().is_empty());

    // A second sweep whose trials take a while: one is cancelled mid-run
    // (scancel sends SIGTERM: it records itself as interrupted), the
    // submission again runs that one only.
    let long = TINY
        .replace("epochs = 3\n", "epochs = 150\n")
        .replace("patience = 3\n", "patience = 150\n");
    assert_ne!(long, TINY);
    std::fs::write(
        dir.join("long.toml"),
        format!("{long}\n[sweep]\nseed = [0, 1, 2]\n"),
    )
    .unwrap();
    let sub = c.json(
        dir,
        &[
            "run",
            "long.toml",
            "--backend",
            "slurm",
            "--cpus-per-task",
            "1",
            "--json",
        ],
    );
    assert_eq!(sub["submitted"], 3);
    let job = sub["job_ids"][0].as_str().unwrap().to_string();
    let sweep = sub["sweep_id"].as_str().unwrap().to_string();
    c.wait(dir, &sweep, |s| {
        s["trials"][1]["state"] == "running" && {
            // Running in vpd, not just started by Slurm: it wrote its state.
            let dirp = PathBuf::from(s["trials"][1]["log"].as_str().unwrap());
            let state = dirp
                .parent()
                .unwrap()
                .parent()
                .unwrap()
                .join("trials/1/state.json");
            std::fs::read_to_string(state).is_ok_and(|t| t.contains("running"))
        }
    });
    std::thread::sleep(Duration::from_secs(2));
    c.scancel(&format!("{job}_1"));
    let s = c.wait(dir, &sweep, settled);
    assert_eq!(states(&s), ["finished", "interrupted", "finished"], "{s:#}");
    assert!(
        s["trials"][1]["error"]
            .as_str()
            .unwrap()
            .contains("SIGTERM"),
        "{s:#}"
    );
    // Its own store says so too.
    let tstore = Path::new(s["trials"][1]["log"].as_str().unwrap())
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("trials/1/store");
    let out = vpd()
        .args(["--store"])
        .arg(&tstore)
        .args(["runs", "--json"])
        .output()
        .unwrap();
    let runs: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        runs.as_array()
            .unwrap()
            .iter()
            .filter(|r| r["status"] == "interrupted")
            .count(),
        1,
        "{runs:#}"
    );
    let first = c.json(dir, &["sweep", "collect", &sweep, "--json"]);
    assert_eq!(first["collected"], 2);
    assert_eq!(first["missing"].as_array().unwrap().len(), 1);
    let before = run_ids(&first);

    let again = c.json(
        dir,
        &[
            "run",
            "long.toml",
            "--backend",
            "slurm",
            "--cpus-per-task",
            "1",
            "--json",
        ],
    );
    assert_eq!(again["submitted"], 1, "{again:#}");
    let job2 = again["job_ids"][0].as_str().unwrap().to_string();
    assert_ne!(job2, job);
    let s = c.wait(dir, &sweep, all_finished);
    assert_eq!(s["trials"][1]["job"], format!("{job2}_1"));
    assert_eq!(s["trials"][0]["job"], format!("{job}_0"));
    let col = c.json(dir, &["sweep", "collect", &sweep, "--json"]);
    assert_eq!(col["collected"], 1);
    let ids = run_ids(&col);
    assert_eq!(ids.len(), 3);
    assert!(
        before.iter().all(|b| ids.contains(b)),
        "the finished trials did not run again"
    );
    let _ = in_ci();
}
