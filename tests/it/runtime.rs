//! The actor runtime and `vpd eval`: oracle evaluation scores 100%,
//! failing steps are counted and not fatal, the bound on programs in
//! flight holds, batched and sequential modes agree, results are reused.

use std::path::Path;

use visprog_distiller::models;
use visprog_distiller::nn::model::Model;
use visprog_distiller::nn::DeviceChoice;
use visprog_distiller::runtime::actors::{Batch, Batcher, Call};
use visprog_distiller::runtime::exec::{self, ExecConfig, ImageCache, ModuleChoice};
use visprog_distiller::runtime::{jobs, score, teacher_eval};
use visprog_distiller::store::{NewVersion, Store};
use visprog_distiller::vocab::Task;

use crate::common::vpd_json;

fn eval_json(dir: &Path, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["--store", "st", "eval", "--n", "60", "--json"];
    all.extend_from_slice(args);
    vpd_json(dir, &all)
}

/// A store at `dir/st` holding vqa@1, an untrained student: enough to
/// exercise the runtime.
fn student_store(dir: &Path) -> Store {
    let st = Store::open(dir.join("st")).unwrap();
    let m = Model::new(models::student_meta(), DeviceChoice::Cpu, 0).unwrap();
    st.save_version(
        NewVersion {
            module: "vqa".into(),
            ..Default::default()
        },
        &m.to_bytes().unwrap(),
        None,
    )
    .unwrap();
    st
}

#[test]
fn oracle_evaluation_of_synthetic_nlvr2_scores_100_and_is_reused() {
    let d = tempfile::tempdir().unwrap();
    let j = eval_json(d.path(), &["--task", "nlvr2", "--modules", "oracle"]);
    assert_eq!(j["score"]["n"], 60);
    assert_eq!(j["score"]["accuracy"], 100.0);
    assert_eq!(j["reused"], false);
    assert_eq!(j["by_type"].as_object().unwrap().len(), 8, "{j}");
    assert_eq!(j["program_errors"], 0);
    // The same pipeline again: the stored result.
    let again = eval_json(d.path(), &["--task", "nlvr2", "--modules", "oracle"]);
    assert_eq!(again["reused"], true);
    assert_eq!(again["evaluation"]["id"], j["evaluation"]["id"]);
    let forced = eval_json(
        d.path(),
        &["--task", "nlvr2", "--modules", "oracle", "--force"],
    );
    assert_eq!(forced["reused"], false);
    assert_ne!(forced["evaluation"]["id"], j["evaluation"]["id"]);
    // GQA with oracle modules is right too.
    let g = eval_json(d.path(), &["--task", "gqa", "--modules", "oracle"]);
    assert_eq!(g["score"]["accuracy"], 100.0, "{g}");
}

#[test]
fn failing_steps_are_counted_not_fatal() {
    let d = tempfile::tempdir().unwrap();
    // Make the data, then break three of the test split's images.
    eval_json(
        d.path(),
        &["--task", "gqa", "--modules", "oracle", "--limit", "1"],
    );
    let data = std::fs::read_dir(d.path().join("st/data"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.file_name().unwrap().to_string_lossy().starts_with("gqa-"))
        .unwrap();
    let imgs = data.join("images");
    std::fs::remove_file(imgs.join("4000000.png")).unwrap();
    std::fs::write(imgs.join("4000001.png"), b"not a png").unwrap();
    std::fs::remove_file(imgs.join("4000002.png")).unwrap();
    let j = eval_json(
        d.path(),
        &["--task", "gqa", "--modules", "oracle", "--limit", "20"],
    );
    assert_eq!(j["failed_steps"], 3, "{j}");
    assert_eq!(j["score"]["n"], 20);
    assert_eq!(j["score"]["correct"], 17);
    // The failures are recorded against their examples.
    let st = Store::open(d.path().join("st")).unwrap();
    let e = st.evaluations().unwrap().into_iter().last().unwrap();
    let det = score::details(&st, &e).unwrap().unwrap();
    let errs: Vec<String> = det
        .examples
        .iter()
        .filter_map(|x| x["error"].as_str().map(String::from))
        .collect();
    assert_eq!(errs.len(), 3);
    assert!(
        errs.iter().all(|e| e.starts_with("input IMAGE")),
        "{errs:?}"
    );
}

#[test]
fn the_in_flight_bound_holds_and_batched_agrees_with_sequential() {
    let d = tempfile::tempdir().unwrap();
    let st = student_store(d.path());
    let data = teacher_eval::task_data(&st, Task::Gqa, 60).unwrap();
    let jobs = jobs::jobs(Task::Gqa, &data, "test").unwrap();
    let vqa = ModuleChoice::Version("vqa@1".parse().unwrap());
    let cache = ImageCache::default();
    let run = |cfg: ExecConfig| {
        exec::execute(
            &st,
            &jobs,
            Task::Gqa,
            &vqa,
            &ModuleChoice::Oracle,
            None,
            cfg,
            &cache,
            &|_| {},
        )
        .unwrap()
    };
    let bounded = run(ExecConfig {
        in_flight: 5,
        max_batch: 16,
        max_wait_ms: 20,
        workers: 2,
        ..ExecConfig::batched(1)
    });
    eprintln!(
        "observed at most {} programs in flight (bound 5), mean VQA batch {:.1}",
        bounded.max_in_flight, bounded.vqa_mean_batch
    );
    assert!(bounded.max_in_flight <= 5 && bounded.max_in_flight >= 2);
    assert!(
        bounded.vqa_mean_batch > 1.0,
        "calls of several programs share a forward pass"
    );
    // The VQA workers' time in forward passes is measured, and within the
    // run's wall time for each of the two; the oracle LOC has no worker.
    assert!(
        bounded.vqa_busy_seconds > 0.0 && bounded.vqa_busy_seconds <= 2.0 * bounded.seconds,
        "{} s busy in {} s",
        bounded.vqa_busy_seconds,
        bounded.seconds
    );
    assert_eq!(bounded.loc_busy_seconds, 0.0);
    assert!(bounded.cpu_seconds > 0.0, "CPU time of the run is measured");
    let seq = run(ExecConfig::sequential());
    assert_eq!(seq.max_in_flight, 1);
    assert!((seq.vqa_mean_batch - 1.0).abs() < 1e-9);
    let said = |r: &exec::ExecReport| -> Vec<Option<String>> {
        r.outcomes.iter().map(|o| o.predicted.clone()).collect()
    };
    assert_eq!(said(&bounded), said(&seq));
    assert!(bounded.outcomes.iter().all(|o| o.error.is_none()));
}

#[test]
fn bench_exec_accounts_for_cpu_time_and_bounds_the_speedup() {
    let d = tempfile::tempdir().unwrap();
    let _st = student_store(d.path());
    let j = vpd_json(
        d.path(),
        &[
            "--store",
            "st",
            "bench",
            "exec",
            "--vqa",
            "vqa@1",
            "--loc",
            "oracle",
            "--programs",
            "24",
            "--rounds",
            "1",
            "--json",
        ],
    );
    assert_eq!(j["predictions_identical"], true, "{j}");
    assert_eq!(j["programs"], 24);
    assert_eq!(j["sequential_threads"], 1);
    for k in [
        "batched_programs_per_s",
        "sequential_programs_per_s",
        "speedup",
    ] {
        assert!(j[k].as_f64().unwrap() > 0.0, "{k}: {j}");
    }
    let b = &j["busy"];
    for k in ["batched_cpu_s", "sequential_cpu_s", "sequential_wall_s"] {
        assert!(b[k].as_f64().unwrap() > 0.0, "{k}: {j}");
    }
    let c = &j["ceiling"];
    // The VQA network was timed alone, at batch 1 and at the batch the
    // batched mode reached; the oracle LOC slot has no network.
    let batch = c["batch"][0].as_u64().unwrap();
    assert!((1..=32).contains(&batch), "{c}");
    assert_eq!(
        batch,
        (j["mean_batch"].as_f64().unwrap().round() as u64).clamp(1, 32)
    );
    assert!(c["vqa_ms"][0].as_f64().unwrap() > 0.0 && c["vqa_ms"][1].as_f64().unwrap() > 0.0);
    assert_eq!(c["batch"][1], 0);
    assert_eq!(c["loc_ms"], serde_json::json!([0.0, 0.0]));
    // The bound follows from the figures it names.
    let cores = c["cores"].as_f64().unwrap();
    let vqa_q = b["vqa_queries"].as_f64().unwrap();
    assert!(vqa_q > 0.0);
    // CPU time in forward passes is measured on the workers' threads, and
    // the rest is what the process used besides.
    let fwd = b["batched_forward_cpu_s"].as_f64().unwrap();
    let rest = b["batched_rest_cpu_s"].as_f64().unwrap();
    assert!(fwd > 0.0 && rest > 0.0, "{b}");
    assert!(b["sequential_forward_cpu_s"].as_f64().unwrap() > 0.0, "{b}");
    assert_eq!(c["rest_cpu_s"], b["batched_rest_cpu_s"]);
    let forward = vqa_q * c["vqa_ms"][1].as_f64().unwrap() / 1e3;
    assert!((c["forward_alone_s"].as_f64().unwrap() - forward).abs() < 1e-9);
    let least = (rest + forward) / cores;
    assert!(
        (c["min_round_s"].as_f64().unwrap() - least).abs() < 1e-9,
        "{c}"
    );
    let bound = b["sequential_wall_s"].as_f64().unwrap() / least;
    assert!(
        (c["speedup"].as_f64().unwrap() - bound).abs() < 1e-6 * bound,
        "{c}"
    );
    let reached = j["speedup"].as_f64().unwrap() / bound;
    assert!(
        (c["reached"].as_f64().unwrap() - reached).abs() < 1e-6,
        "{c}"
    );
}

#[test]
fn a_crashed_worker_is_restarted_and_its_batch_retried() {
    let d = tempfile::tempdir().unwrap();
    let _st = student_store(d.path());
    let args = [
        "--task",
        "gqa",
        "--modules",
        "VQA=vqa@1",
        "LOC=oracle",
        "--limit",
        "30",
    ];
    let clean = eval_json(d.path(), &args);
    let mut all = vec!["--store", "st", "eval", "--n", "60", "--json", "--force"];
    all.extend_from_slice(&args);
    let out = crate::common::vpd()
        .current_dir(d.path())
        .env("VPD_FAULT_WORKER_PANIC", "1")
        .args(&all)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let faulty: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(faulty["exec"]["restarts"], 1, "{faulty}");
    assert_eq!(
        faulty["failed_steps"], 0,
        "the batch was retried on a fresh worker"
    );
    assert_eq!(faulty["score"], clean["score"]);
}

/// A worker whose module loads on the CPU in the probe but is refused in
/// the worker (a fault-injection switch standing for a load that fails
/// only on the worker's device, such as running out of GPU memory): the
/// command ends with one error naming the module and the device, exit 1,
/// no panic, and nothing is recorded.
#[test]
fn a_worker_whose_module_fails_to_load_ends_the_command_with_one_error() {
    let d = tempfile::tempdir().unwrap();
    let st = student_store(d.path());
    drop(st);
    let out = crate::common::vpd()
        .current_dir(d.path())
        .env("VPD_FAULT_WORKER_LOAD", "1")
        .args([
            "--store",
            "st",
            "eval",
            "--n",
            "60",
            "--task",
            "gqa",
            "--modules",
            "VQA=vqa@1",
            "LOC=oracle",
            "--limit",
            "10",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("the vqa@1 worker did not load its network on cpu"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("error")).collect();
    assert_eq!(errors.len(), 1, "{err}");
    let st = Store::open(d.path().join("st")).unwrap();
    assert!(st.evaluations().unwrap().is_empty(), "nothing recorded");
}

/// What the slow workers saw: batch sizes, and the most batches being
/// computed at once.
#[derive(Default)]
struct Seen {
    sizes: std::sync::Mutex<Vec<usize>>,
    inside: std::sync::atomic::AtomicUsize,
    most_inside: std::sync::atomic::AtomicUsize,
}

/// A worker that takes 20 ms per batch.
struct SlowWorker {
    seen: std::sync::Arc<Seen>,
}

impl actix::Actor for SlowWorker {
    type Context = actix::SyncContext<Self>;
}

impl actix::Handler<Batch<u32, u32>> for SlowWorker {
    type Result = Result<Vec<u32>, visprog_distiller::runtime::actors::WorkerError>;
    fn handle(&mut self, msg: Batch<u32, u32>, _: &mut actix::SyncContext<Self>) -> Self::Result {
        use std::sync::atomic::Ordering::SeqCst;
        let now = self.seen.inside.fetch_add(1, SeqCst) + 1;
        self.seen.most_inside.fetch_max(now, SeqCst);
        self.seen.sizes.lock().unwrap().push(msg.0.len());
        std::thread::sleep(std::time::Duration::from_millis(20));
        self.seen.inside.fetch_sub(1, SeqCst);
        Ok(msg.0.iter().map(|x| x * 2).collect())
    }
}

/// 40 calls in four bursts 5 ms apart through a batcher for `workers`
/// workers (batches of at most 8, no wait) in front of `threads` slow
/// worker threads; the answers and what the workers saw.
fn through_batcher(workers: usize, threads: usize) -> (Vec<u32>, std::sync::Arc<Seen>) {
    use actix::prelude::*;
    let seen = std::sync::Arc::new(Seen::default());
    let s2 = seen.clone();
    let answers = System::new().block_on(async move {
        let worker = SyncArbiter::start(threads, move || SlowWorker { seen: s2.clone() });
        let batcher =
            Batcher::new(worker.recipient(), 8, std::time::Duration::ZERO, workers).start();
        let mut rxs = Vec::new();
        for i in 0..40u32 {
            let (tx, rx) = tokio::sync::oneshot::channel();
            batcher.do_send(Call {
                query: i,
                reply: tx,
            });
            rxs.push(rx);
            if i % 10 == 9 {
                actix::clock::sleep(std::time::Duration::from_millis(5)).await;
            }
        }
        let mut out = Vec::new();
        for rx in rxs {
            out.push(rx.await.unwrap().unwrap());
        }
        out
    });
    (answers, seen)
}

/// The batcher gives each worker one batch at a time: calls that arrive
/// while the workers compute gather into the next batches (even with no
/// wait at all), no more batches are out than it has workers (even when
/// the arbiter has more threads), and every call gets its own answer.
#[test]
fn the_batcher_gathers_calls_while_its_workers_are_busy() {
    use std::sync::atomic::Ordering::SeqCst;
    let want: Vec<u32> = (0..40u32).map(|x| x * 2).collect();
    for (workers, threads) in [(1, 1), (2, 3)] {
        let (answers, seen) = through_batcher(workers, threads);
        assert_eq!(answers, want);
        let sizes = seen.sizes.lock().unwrap().clone();
        assert_eq!(sizes.iter().sum::<usize>(), 40);
        assert!(
            sizes.iter().all(|&n| n <= 8),
            "max_batch respected: {sizes:?}"
        );
        // The first call leaves alone (a worker was idle and there is no
        // wait); the rest gather while the workers compute.
        assert_eq!(sizes[0], 1, "{sizes:?}");
        assert!(sizes.len() <= 4 + 4 * workers, "few batches: {sizes:?}");
        assert_eq!(seen.most_inside.load(SeqCst), workers, "{workers} workers");
    }
}

/// The decoded-image cache stays within its budget in bytes, dropping the
/// least recently used image first; a budget of 0 keeps nothing.
#[test]
fn the_image_cache_is_bounded_in_bytes_least_recently_used_first() {
    use visprog_distiller::runtime::exec::ImageCache;
    let d = tempfile::tempdir().unwrap();
    let paths: Vec<std::path::PathBuf> = (0..3)
        .map(|k| {
            let p = d.path().join(format!("{k}.png"));
            image::RgbImage::from_pixel(20, 10, image::Rgb([k as u8 * 80, 0, 0]))
                .save(&p)
                .unwrap();
            p
        })
        .collect();
    let one = 20 * 10 * 3;
    let cache = ImageCache::with_budget(2 * one);
    for p in &paths[..2] {
        cache.get(p).unwrap();
    }
    cache.get(&paths[0]).unwrap(); // 0 is now the most recently used
    cache.get(&paths[2]).unwrap(); // evicts 1
    let s = cache.stats();
    assert_eq!((s.decodes, s.hits), (3, 1));
    assert!(s.peak_bytes <= 2 * one, "{s:?}");
    cache.get(&paths[0]).unwrap();
    assert_eq!(cache.stats().hits, 2, "0 was kept");
    cache.get(&paths[1]).unwrap();
    assert_eq!(cache.stats().decodes, 4, "1 was dropped and decoded again");
    let none = ImageCache::with_budget(0);
    none.get(&paths[0]).unwrap();
    none.get(&paths[0]).unwrap();
    assert_eq!((none.stats().decodes, none.stats().peak_bytes), (2, 0));
    // A missing image is an error naming it, not a panic.
    let err = cache
        .get(&d.path().join("gone.png"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("gone.png"), "{err}");
}
