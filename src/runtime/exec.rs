//! The executor: many programs at once through the module actors, with a
//! bound on the programs in flight (actix sync mailboxes are unbounded, so
//! the bound is here), or one at a time with batches of one (sequential
//! mode, as VisProg runs) on the same actors, networks, thread count and
//! image cache.
//!
//! Each program runs on one of `in_flight` program threads; its
//! deterministic steps (CROP, COUNT, EVAL, RESULT ...) run inline there
//! (microseconds each; a mailbox hop would cost more than the step), and
//! its LOC and VQA steps go to the batcher actors as `Call`s whose answers
//! come back on a oneshot channel.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix::prelude::*;
use serde::Serialize;
use tokio::sync::oneshot;

use super::actors::{
    Batch, Batcher, Generate, GenerateSource, LocQuery, LocWorker, ProgramGenerator, VqaQuery,
    VqaWorker, WorkerError, WorkerStats,
};
use crate::data::gqa::SceneGraph;
use crate::models;
use crate::nn::detector::Detection;
use crate::nn::DeviceChoice;
use crate::program::interp::{self, ImageVal, Perception, Rect};
use crate::program::llm::LlmConfig;
use crate::program::oracle::Oracle;
use crate::program::validate;
use crate::store::{Store, VersionRef};
use crate::vocab::{Slot, Task};

/// One example to run.
#[derive(Clone)]
pub struct Job {
    /// Question id or NLVR2 identifier.
    pub id: String,
    /// Question type (GQA family) or statement family.
    pub kind: String,
    /// The question or statement.
    pub text: String,
    /// What the annotated generator works from.
    pub source: GenerateSource,
    /// Input images by program name (`IMAGE`, or `LEFT` and `RIGHT`).
    pub inputs: Vec<(String, PathBuf)>,
    /// Scene graphs by input name, for oracle modules.
    pub scenes: BTreeMap<String, SceneGraph>,
    /// The right answer (GQA) or `true`/`false` (NLVR2).
    pub expected: String,
}

/// Which network fills a module slot.
#[derive(Debug, Clone, PartialEq)]
pub enum ModuleChoice {
    /// The oracle (scene graphs).
    Oracle,
    /// A version in the store.
    Version(VersionRef),
}

impl std::fmt::Display for ModuleChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ModuleChoice::Oracle => f.write_str("oracle"),
            ModuleChoice::Version(r) => write!(f, "{r}"),
        }
    }
}

/// Parses `--modules` as `vpd eval`, `vpd bench exec` and `vpd program run`
/// take it: `oracle` (every slot), `SLOT=oracle` or `SLOT=MODULE@REF`
/// (SLOT: VQA or LOC, any case). Later words override earlier ones; the
/// slots no word names are absent (each command has its own default).
pub fn parse_modules(words: &[String]) -> Result<BTreeMap<Slot, ModuleChoice>, String> {
    let mut out = BTreeMap::new();
    for w in words {
        if w == "oracle" {
            for s in Slot::ALL {
                out.insert(s, ModuleChoice::Oracle);
            }
            continue;
        }
        let Some((slot, spec)) = w.split_once('=') else {
            return Err(format!(
                "--modules {w}: expected oracle or SLOT=MODULE@REF (SLOT: VQA or LOC)"
            ));
        };
        let slot: Slot = slot.parse().map_err(|e| format!("--modules {w}: {e}"))?;
        let choice = if spec == "oracle" {
            ModuleChoice::Oracle
        } else {
            ModuleChoice::Version(spec.parse().map_err(|e| format!("--modules {w}: {e}"))?)
        };
        out.insert(slot, choice);
    }
    Ok(out)
}

/// How to execute.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct ExecConfig {
    /// Programs in flight at once (1 = sequential).
    pub in_flight: usize,
    /// Largest batch a worker gets.
    pub max_batch: usize,
    /// Longest a call waits for its batch to fill, milliseconds.
    pub max_wait_ms: u64,
    /// Workers per neural module, each with its own copy of the network
    /// (one libtorch thread each on a small machine).
    pub workers: usize,
    /// Bytes of decoded images an evaluation keeps (least recently used
    /// dropped first).
    pub image_cache_bytes: usize,
    /// Where the module workers run their networks.
    pub device: DeviceChoice,
}

/// Largest batch a module worker on a GPU gets unless told otherwise
/// (`--gpu-batch`).
pub const GPU_BATCH: usize = 256;

impl ExecConfig {
    /// Batched: 64 programs in flight, batches of up to 32, 2 ms wait, and
    /// for each neural module one worker per `threads` cores, where
    /// `threads` is the libtorch thread count the caller set (1 gives a
    /// worker per core). Measured with `vpd bench exec` on 2 cores: these
    /// networks cost the least per query at batches of 8 to 32 (larger
    /// ones fall out of the cache); 256 program threads cost more in
    /// scheduling than they gain in batch size; and with one worker per
    /// module, LOC bounds the round while the VQA worker idles, so a
    /// second LOC worker takes the idle core.
    pub fn batched(threads: usize) -> ExecConfig {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        ExecConfig {
            in_flight: 64,
            max_batch: 32,
            max_wait_ms: 2,
            workers: (cores / threads.max(1)).max(1),
            image_cache_bytes: DEFAULT_IMAGE_CACHE,
            device: DeviceChoice::Cpu,
        }
    }

    /// These settings on `device`. On a GPU each module has one worker
    /// (the GPU is shared, a second copy of the network gains nothing),
    /// batched execution takes batches of up to `gpu_batch` with enough
    /// programs in flight to fill them, and a batch's images go to the
    /// device in one copy. On the CPU nothing changes.
    pub fn on(self, device: DeviceChoice, gpu_batch: usize) -> ExecConfig {
        match device {
            DeviceChoice::Cpu => ExecConfig { device, ..self },
            DeviceChoice::Cuda(_) if self.max_batch <= 1 => ExecConfig {
                device,
                workers: 1,
                ..self
            },
            DeviceChoice::Cuda(_) => {
                let batch = gpu_batch.max(1);
                ExecConfig {
                    device,
                    workers: 1,
                    max_batch: batch,
                    in_flight: self.in_flight.max(2 * batch),
                    ..self
                }
            }
        }
    }
    /// Sequential: one program at a time, batches of one.
    pub fn sequential() -> ExecConfig {
        ExecConfig {
            in_flight: 1,
            max_batch: 1,
            max_wait_ms: 0,
            // One call at a time: a second worker would never get one.
            workers: 1,
            image_cache_bytes: DEFAULT_IMAGE_CACHE,
            device: DeviceChoice::Cpu,
        }
    }
}

/// Where an example failed, for callers that branch on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FailedAt {
    /// The generator wrote no program (an unreachable endpoint, a refusal).
    Generation,
    /// The program it wrote is not valid.
    Validation,
    /// An input image could not be read.
    Input,
    /// A step of the program failed.
    Step,
}

/// What happened to one example.
#[derive(Debug, Clone, Serialize)]
pub struct ExampleOutcome {
    /// Id.
    pub id: String,
    /// Question type or family.
    pub kind: String,
    /// The question or statement.
    pub text: String,
    /// The program (when one was generated).
    pub program: Option<String>,
    /// The answer given (None when a step failed).
    pub predicted: Option<String>,
    /// The right answer.
    pub expected: String,
    /// Whether they agree.
    pub correct: bool,
    /// The failure, naming the step.
    pub error: Option<String>,
    /// Where it failed (none when it ran to the end).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failed_at: Option<FailedAt>,
    /// The trace (steps with their inputs and outputs), kept as its JSON
    /// text: a parsed tree costs several times as much memory, and a
    /// split holds one per example until it is recorded.
    pub trace: Option<Box<serde_json::value::RawValue>>,
}

impl ExampleOutcome {
    /// The trace, parsed.
    pub fn trace_value(&self) -> Option<serde_json::Value> {
        self.trace
            .as_ref()
            .and_then(|t| serde_json::from_str(t.get()).ok())
    }
}

/// The executor's report.
#[derive(Debug, Clone, Serialize)]
pub struct ExecReport {
    /// One per job, in job order.
    pub outcomes: Vec<ExampleOutcome>,
    /// Wall-clock seconds of the execution (from the moment every worker
    /// has its network).
    pub seconds: f64,
    /// CPU seconds (user and system, every thread of the process) over
    /// those wall-clock seconds.
    pub cpu_seconds: f64,
    /// Most programs observed in flight at once.
    pub max_in_flight: usize,
    /// Mean batch of the VQA worker (0 without one).
    pub vqa_mean_batch: f64,
    /// Mean batch of the LOC worker (0 without one).
    pub loc_mean_batch: f64,
    /// Queries the VQA worker answered.
    pub vqa_queries: usize,
    /// Queries the LOC worker answered.
    pub loc_queries: usize,
    /// Seconds the VQA worker spent in forward passes.
    pub vqa_busy_seconds: f64,
    /// Seconds the LOC worker spent in forward passes.
    pub loc_busy_seconds: f64,
    /// CPU seconds of the VQA workers' threads in forward passes.
    pub vqa_cpu_seconds: f64,
    /// CPU seconds of the LOC workers' threads in forward passes.
    pub loc_cpu_seconds: f64,
    /// Worker restarts after a crash.
    pub restarts: usize,
    /// The settings.
    pub config: ExecConfig,
}

/// An error that stops the whole execution (a step's failure does not).
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// A module version that does not load.
    #[error(transparent)]
    Model(#[from] models::ModelError),
    /// The actor system did not start.
    #[error("actor system: {0}")]
    System(String),
    /// A module's worker did not load its network on its device (at start
    /// or on a restart after a crash).
    #[error(transparent)]
    WorkerStart(WorkerError),
}

/// The answers and input size of a VQA version.
#[derive(Clone)]
pub(super) struct VqaInfo {
    pub(super) answers: Arc<Vec<String>>,
    pub(super) side: u32,
}

fn vqa_probe(store: &Store, r: &VersionRef, device: DeviceChoice) -> Result<VqaInfo, ExecError> {
    let v = models::load_vqa(store, r, device)?;
    Ok(VqaInfo {
        answers: Arc::new(v.model.meta.answers.list.clone()),
        side: v.model.meta.film.image_size as u32,
    })
}

pub(super) type VqaBatcher = Addr<Batcher<VqaQuery, Vec<f32>>>;
pub(super) type LocBatcher = Addr<Batcher<LocQuery, Vec<Detection>>>;

struct Actors {
    vqa: Option<(VqaBatcher, String)>,
    loc: Option<(LocBatcher, String, u32)>,
    generator: Addr<ProgramGenerator>,
    arbiter: ArbiterHandle,
    system: System,
}

/// CPU seconds (user and system) this process has used, all threads.
pub fn process_cpu_seconds() -> f64 {
    // SAFETY: getrusage only writes the struct it is given.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) } != 0 {
        return 0.0;
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(u.ru_utime) + secs(u.ru_stime)
}

/// Counts the workers that have their network: `SyncArbiter::start` makes
/// them on their own threads, after it returns, and the execution's clock
/// starts once they all have. A worker whose network did not load says so
/// here, and the execution ends with that error before it starts.
#[derive(Default)]
struct Ready(Mutex<(usize, Option<WorkerError>)>, std::sync::Condvar);

impl Ready {
    fn state(&self) -> std::sync::MutexGuard<'_, (usize, Option<WorkerError>)> {
        // Every update is one assignment: a poisoned lock holds a
        // consistent count.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
    /// A worker started with its network (`Err`: the reason it has none).
    fn started(&self, outcome: Result<(), &WorkerError>) {
        let mut st = self.state();
        match outcome {
            Ok(()) => st.0 += 1,
            Err(e) => {
                st.1.get_or_insert_with(|| e.clone());
            }
        }
        self.1.notify_all();
    }
    /// Waits until `n` workers are ready or one failed (at most 60 s: a
    /// worker slower than that is reported by its first batch instead).
    fn wait(&self, n: usize) -> Result<(), WorkerError> {
        let g = self.state();
        let g = self
            .1
            .wait_timeout_while(g, Duration::from_secs(60), |st| st.0 < n && st.1.is_none())
            .map(|(g, _)| g)
            .unwrap_or_else(|e| e.into_inner().0);
        match &g.1 {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }
}

/// A module's network loaded in a worker on its device; the error names
/// the module and the device. `VPD_FAULT_WORKER_LOAD=1` refuses every
/// worker's load (fault injection: the probe before the workers start
/// loads as usual, so this is what a load that fails only in the worker,
/// such as running out of GPU memory, looks like).
fn worker_load<T, E: std::fmt::Display>(
    label: &str,
    device: DeviceChoice,
    load: impl FnOnce() -> Result<T, E>,
) -> Result<T, WorkerError> {
    let refused = std::env::var("VPD_FAULT_WORKER_LOAD").is_ok_and(|v| v == "1");
    let out = if refused {
        Err("refused by VPD_FAULT_WORKER_LOAD=1 (fault injection)".to_string())
    } else {
        load().map_err(|e| e.to_string())
    };
    out.map_err(|message| WorkerError::Load {
        module: label.to_string(),
        device: device.to_string(),
        message,
    })
}

/// Sends from any thread: the request runs on `arbiter`, the caller
/// blocks for its answer.
pub(crate) fn ask<R: Send + 'static>(
    arbiter: &ArbiterHandle,
    fut: impl std::future::Future<Output = Result<R, MailboxError>> + Send + 'static,
) -> Result<R, String> {
    let (tx, rx) = oneshot::channel();
    arbiter.spawn(async move {
        let _ = tx.send(fut.await);
    });
    rx.blocking_recv()
        .map_err(|_| "actor system stopped".to_string())?
        .map_err(|e| e.to_string())
}

pub use crate::data::image_cache::{CacheStats, ImageCache, DEFAULT_IMAGE_CACHE};

use super::calls::{ActorLoc, ActorVqa};

#[allow(clippy::too_many_arguments)]
fn start_actors(
    store: &Store,
    vqa: &ModuleChoice,
    loc: &ModuleChoice,
    task: Task,
    llm: Option<LlmConfig>,
    cfg: ExecConfig,
    stats: (Arc<WorkerStats>, Arc<WorkerStats>),
    ready: Arc<Ready>,
) -> Result<(Actors, std::thread::JoinHandle<()>, Option<VqaInfo>), ExecError> {
    // Load each network once here, so that a bad version or a missing
    // device is an error now and not a panic inside a worker thread.
    if vqa != &ModuleChoice::Oracle || loc != &ModuleChoice::Oracle {
        cfg.device.to_tch().map_err(models::ModelError::from)?;
    }
    let answers = match vqa {
        ModuleChoice::Version(r) => Some(vqa_probe(store, r, cfg.device)?),
        ModuleChoice::Oracle => None,
    };
    let loc_side = match loc {
        ModuleChoice::Version(r) => models::load_loc(store, r, cfg.device)?
            .detector
            .image_size() as u32,
        ModuleChoice::Oracle => 0,
    };
    let label = |r: &VersionRef| -> Result<String, ExecError> {
        let v = store.resolve(r).map_err(models::ModelError::from)?;
        Ok(format!("{}@{}", v.module, v.number))
    };
    let vqa_spec = match vqa {
        ModuleChoice::Version(r) => Some((r.clone(), label(r)?)),
        ModuleChoice::Oracle => None,
    };
    let loc_spec = match loc {
        ModuleChoice::Version(r) => Some((r.clone(), label(r)?)),
        ModuleChoice::Oracle => None,
    };
    let limit = super::actors::module_timeout().map_err(ExecError::System)?;
    let store = store.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    let handle = std::thread::spawn(move || {
        let sys = System::new();
        sys.block_on(async move {
            let wait = Duration::from_millis(cfg.max_wait_ms);
            let vqa = vqa_spec.map(|(r, label)| {
                let (st, s, l) = (store.clone(), stats.0.clone(), label.clone());
                let name = label.clone();
                let ready = ready.clone();
                let w = SyncArbiter::start(cfg.workers.max(1), move || {
                    let net =
                        worker_load(&label, cfg.device, || models::load_vqa(&st, &r, cfg.device));
                    ready.started(net.as_ref().map(|_| ()));
                    VqaWorker {
                        net,
                        stats: s.clone(),
                    }
                });
                let b = Batcher::new(
                    w.recipient::<Batch<VqaQuery, Vec<f32>>>(),
                    cfg.max_batch,
                    wait,
                    cfg.workers,
                )
                .with_limit(name, limit);
                (b.start(), l)
            });
            let loc = loc_spec.map(|(r, label)| {
                let (st, s, l) = (store.clone(), stats.1.clone(), label.clone());
                let name = label.clone();
                let ready = ready.clone();
                let w = SyncArbiter::start(cfg.workers.max(1), move || {
                    let net =
                        worker_load(&label, cfg.device, || models::load_loc(&st, &r, cfg.device));
                    ready.started(net.as_ref().map(|_| ()));
                    LocWorker {
                        net,
                        stats: s.clone(),
                    }
                });
                let b = Batcher::new(
                    w.recipient::<Batch<LocQuery, Vec<Detection>>>(),
                    cfg.max_batch,
                    wait,
                    cfg.workers,
                )
                .with_limit(name, limit);
                (b.start(), l, loc_side)
            });
            let gst = store.clone();
            let generator = SyncArbiter::start(1, move || ProgramGenerator {
                llm: llm.clone().map(|c| (gst.clone(), c)),
                task,
            });
            let _ = tx.send(Actors {
                vqa,
                loc,
                generator,
                arbiter: Arbiter::current(),
                system: System::current(),
            });
        });
        let _ = sys.run();
    });
    let actors = rx
        .recv()
        .map_err(|_| ExecError::System("the actor thread stopped while starting".into()))?;
    Ok((actors, handle, answers))
}

/// Runs `jobs` with the given modules and returns every outcome.
#[allow(clippy::too_many_arguments)]
pub fn execute(
    store: &Store,
    jobs: &[Job],
    task: Task,
    vqa: &ModuleChoice,
    loc: &ModuleChoice,
    llm: Option<LlmConfig>,
    cfg: ExecConfig,
    cache: &ImageCache,
    progress: &(dyn Fn(usize) + Sync),
) -> Result<ExecReport, ExecError> {
    let stats = (
        Arc::new(WorkerStats::default()),
        Arc::new(WorkerStats::default()),
    );
    let ready = Arc::new(Ready::default());
    let (actors, handle, answers) = start_actors(
        store,
        vqa,
        loc,
        task,
        llm,
        cfg,
        stats.clone(),
        ready.clone(),
    )?;
    let networks = [actors.vqa.is_some(), actors.loc.is_some()]
        .iter()
        .filter(|x| **x)
        .count();
    if let Err(e) = ready.wait(networks * cfg.workers.max(1)) {
        actors.system.stop();
        let _ = handle.join();
        return Err(ExecError::WorkerStart(e));
    }
    let cpu0 = process_cpu_seconds();
    let t0 = Instant::now();
    let next = AtomicUsize::new(0);
    let in_flight = AtomicUsize::new(0);
    let max_seen = AtomicUsize::new(0);
    let done = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<ExampleOutcome>>> = Mutex::new(vec![None; jobs.len()]);
    std::thread::scope(|s| {
        for _ in 0..cfg.in_flight.max(1) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(job) = jobs.get(i) else { break };
                let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                max_seen.fetch_max(now, Ordering::SeqCst);
                let out = run_one(job, task, &actors, answers.as_ref(), cache);
                in_flight.fetch_sub(1, Ordering::SeqCst);
                results.lock().expect("results lock")[i] = Some(out);
                progress(done.fetch_add(1, Ordering::SeqCst) + 1);
            });
        }
    });
    let seconds = t0.elapsed().as_secs_f64();
    let cpu_seconds = process_cpu_seconds() - cpu0;
    actors.system.stop();
    let _ = handle.join();
    Ok(ExecReport {
        outcomes: results
            .into_inner()
            .expect("results lock")
            .into_iter()
            .map(|o| o.expect("every job ran"))
            .collect(),
        seconds,
        cpu_seconds,
        max_in_flight: max_seen.load(Ordering::SeqCst),
        vqa_mean_batch: stats.0.mean_batch(),
        loc_mean_batch: stats.1.mean_batch(),
        vqa_queries: stats.0.queries.load(Ordering::Relaxed),
        loc_queries: stats.1.queries.load(Ordering::Relaxed),
        vqa_busy_seconds: stats.0.busy_seconds(),
        loc_busy_seconds: stats.1.busy_seconds(),
        vqa_cpu_seconds: stats.0.cpu_seconds(),
        loc_cpu_seconds: stats.1.cpu_seconds(),
        restarts: stats.0.restarts.load(Ordering::Relaxed)
            + stats.1.restarts.load(Ordering::Relaxed),
        config: cfg,
    })
}

fn run_one(
    job: &Job,
    task: Task,
    actors: &Actors,
    answers: Option<&VqaInfo>,
    cache: &ImageCache,
) -> ExampleOutcome {
    let mut out = ExampleOutcome {
        id: job.id.clone(),
        kind: job.kind.clone(),
        text: job.text.clone(),
        program: None,
        predicted: None,
        expected: job.expected.clone(),
        correct: false,
        error: None,
        failed_at: None,
        trace: None,
    };
    let gen = actors.generator.send(Generate {
        id: job.id.clone(),
        text: job.text.clone(),
        source: job.source.clone(),
    });
    let generated = match ask(&actors.arbiter, gen) {
        Ok(r) => r.map_err(|e| e.to_string()),
        Err(e) => Err(e),
    };
    let text = match generated {
        Ok(t) => t,
        Err(e) => {
            out.error = Some(format!("program generation: {e}"));
            out.failed_at = Some(FailedAt::Generation);
            return out;
        }
    };
    out.program = Some(text.clone());
    let (prog, rep) = validate::check_text(&text, Some(task));
    let Some(prog) = prog.filter(|_| rep.errors.is_empty()) else {
        out.error = Some(format!(
            "invalid program: {}",
            rep.errors
                .first()
                .map_or("does not parse".to_string(), |e| e.to_string())
        ));
        out.failed_at = Some(FailedAt::Validation);
        return out;
    };
    let mut inputs = BTreeMap::new();
    for (name, path) in &job.inputs {
        match cache.get(path) {
            Ok(img) => {
                inputs.insert(
                    name.clone(),
                    ImageVal {
                        rect: Rect {
                            x: 0.0,
                            y: 0.0,
                            w: img.width() as f64,
                            h: img.height() as f64,
                        },
                        pixels: img,
                        source: name.clone(),
                        made_by: None,
                    },
                );
            }
            Err(e) => {
                out.error = Some(format!("input {name}: {e}"));
                out.failed_at = Some(FailedAt::Input);
                return out;
            }
        }
    }
    let oracle = || -> Box<dyn Perception> {
        Box::new(Oracle {
            scenes: job.scenes.clone(),
        })
    };
    let mut modules = interp::Composite {
        loc: match &actors.loc {
            Some((addr, label, side)) => Box::new(ActorLoc {
                addr: addr.clone(),
                label: label.clone(),
                side: *side,
            }),
            None => oracle(),
        },
        vqa: match (&actors.vqa, answers) {
            (Some((addr, label)), Some(a)) => Box::new(ActorVqa {
                addr: addr.clone(),
                info: a.clone(),
                label: label.clone(),
            }),
            _ => oracle(),
        },
    };
    match interp::run(&prog, &inputs, &BTreeMap::new(), Some(&mut modules)) {
        Ok(o) => {
            let said = o.result.map(|v| match task {
                Task::Nlvr2 => if v.truthy() { "true" } else { "false" }.to_string(),
                _ => v.to_answer(),
            });
            out.correct = said.as_deref() == Some(job.expected.as_str());
            out.predicted = said;
            out.trace = serde_json::value::to_raw_value(&o.trace).ok();
        }
        Err(f) => {
            out.error = Some(f.error.to_string());
            out.failed_at = Some(FailedAt::Step);
            out.trace = serde_json::value::to_raw_value(&f.trace).ok();
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(w: &[&str]) -> Vec<String> {
        w.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn modules_parse_one_syntax_for_every_command() {
        let m = parse_modules(&words(&["oracle", "vqa=vqa@3"])).unwrap();
        assert_eq!(m[&Slot::Loc], ModuleChoice::Oracle);
        assert_eq!(m[&Slot::Vqa].to_string(), "vqa@3");
        let m = parse_modules(&words(&["LOC=oracle"])).unwrap();
        assert_eq!(m.len(), 1);
        assert!(parse_modules(&words(&["vqa@3"]))
            .unwrap_err()
            .contains("expected oracle or SLOT=MODULE@REF"));
        assert!(parse_modules(&words(&["COUNT=x@1"]))
            .unwrap_err()
            .contains("unknown slot `COUNT`"));
        assert!(parse_modules(&[]).unwrap().is_empty());
    }
}
