//! The actors: neural modules as `SyncArbiter` workers that own their tch
//! networks, an async batcher in front of each (a `SyncArbiter` cannot see
//! its own queue), and the program generator. Messages carry plain data:
//! decoded images as `Arc`s, questions, distributions, boxes.

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use image::RgbImage;
use tokio::sync::oneshot;

use crate::data::images::to_model_input;
use crate::nn::detector::{DetExample, Detection};
use crate::nn::model::Example;
use crate::nn::perception::{NeuralLoc, NeuralVqa};
use crate::nn::NnError;

/// A batch of queries for a worker; one result per query, or an error for
/// the whole batch.
pub struct Batch<Q, R>(pub Vec<Q>, std::marker::PhantomData<R>);

impl<Q, R> Batch<Q, R> {
    /// A batch.
    pub fn new(q: Vec<Q>) -> Self {
        Batch(q, std::marker::PhantomData)
    }
}

impl<Q: 'static, R: 'static> Message for Batch<Q, R> {
    type Result = Result<Vec<R>, WorkerError>;
}

/// Why a module's worker gave no answer to a batch (every call in the
/// batch gets it).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum WorkerError {
    /// The worker's network did not load on its device, at start or on a
    /// restart.
    #[error("the {module} worker did not load its network on {device}: {message}")]
    Load {
        /// `module@number`.
        module: String,
        /// cpu, cuda:N.
        device: String,
        /// Why.
        message: String,
    },
    /// The worker's code panicked; actix restarts it with a fresh network.
    #[error("{module} worker crashed; restarted")]
    Crashed {
        /// `module@number`.
        module: String,
    },
    /// The module's forward pass failed (its own message: a user's module
    /// that raised) or gave NaN or inf.
    #[error("{module}: {message}")]
    Module {
        /// `module@number`.
        module: String,
        /// What it said or gave.
        message: String,
    },
    /// A batch took longer than the per-call limit.
    #[error("{module} gave no answer within {seconds} s (VPD_MODULE_TIMEOUT_S sets the limit)")]
    TimedOut {
        /// `module@number`.
        module: String,
        /// The limit.
        seconds: f64,
    },
    /// The worker's mailbox or the batcher is gone.
    #[error("{0}")]
    Unreachable(String),
    /// A worker of the caller's own (tests, benchmarks) refused the batch.
    #[error("{0}")]
    Other(String),
}

/// A VQA query: an image (a crop or a whole input) as the network's input
/// floats (made by the caller, so that the worker only runs the network),
/// and a question.
#[derive(Clone)]
pub struct VqaQuery {
    /// `to_model_input` of the image at the network's input size.
    pub input: Arc<Vec<f32>>,
    /// The question.
    pub question: String,
}

/// A LOC query: an image as input floats and an object name.
#[derive(Clone)]
pub struct LocQuery {
    /// `to_model_input` of the image at the network's input size.
    pub input: Arc<Vec<f32>>,
    /// The object.
    pub object: String,
}

/// The network input of an image.
pub fn input_of(image: &RgbImage, side: u32) -> Arc<Vec<f32>> {
    Arc::new(to_model_input(image, side))
}

/// Counts what a worker did (shared with the executor's report).
#[derive(Debug, Default)]
pub struct WorkerStats {
    /// Forward passes.
    pub batches: AtomicUsize,
    /// Queries answered.
    pub queries: AtomicUsize,
    /// Worker restarts after a panic.
    pub restarts: AtomicUsize,
    /// Nanoseconds spent in the network's forward passes (wall clock).
    pub busy_ns: std::sync::atomic::AtomicU64,
    /// CPU nanoseconds of the worker threads in forward passes (less than
    /// `busy_ns` when other threads took the core meanwhile).
    pub cpu_ns: std::sync::atomic::AtomicU64,
}

/// CPU nanoseconds the calling thread has used.
pub fn thread_cpu_ns() -> u64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime only writes the struct it is given.
    if unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) } != 0 {
        return 0;
    }
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

/// A forward pass's start: wall clock and the thread's CPU time.
struct Mark(std::time::Instant, u64);

impl Mark {
    fn now() -> Mark {
        Mark(std::time::Instant::now(), thread_cpu_ns())
    }
}

impl WorkerStats {
    fn busy(&self, since: Mark) {
        self.busy_ns
            .fetch_add(since.0.elapsed().as_nanos() as u64, Ordering::Relaxed);
        self.cpu_ns
            .fetch_add(thread_cpu_ns().saturating_sub(since.1), Ordering::Relaxed);
    }

    /// Seconds spent in forward passes.
    pub fn busy_seconds(&self) -> f64 {
        self.busy_ns.load(Ordering::Relaxed) as f64 / 1e9
    }

    /// CPU seconds of the worker threads in forward passes (one libtorch
    /// thread each; with more, their helper threads are not counted).
    pub fn cpu_seconds(&self) -> f64 {
        self.cpu_ns.load(Ordering::Relaxed) as f64 / 1e9
    }

    /// Mean queries per forward pass.
    pub fn mean_batch(&self) -> f64 {
        let b = self.batches.load(Ordering::Relaxed);
        self.queries.load(Ordering::Relaxed) as f64 / b.max(1) as f64
    }
}

/// Makes a worker's network inside its own thread.
pub type Factory<T> = Arc<dyn Fn() -> T + Send + Sync>;

/// Fault injection for tests: with `VPD_FAULT_WORKER_PANIC=1` in the
/// environment, the first batch a worker of this process takes panics (once
/// per process), so that supervision and the retry can be tested on the
/// real binary.
fn injected_fault() -> bool {
    static FIRED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    std::env::var("VPD_FAULT_WORKER_PANIC").is_ok_and(|v| v == "1")
        && !FIRED.swap(true, Ordering::SeqCst)
}

/// What a module worker runs: a network that answers a batch of its
/// slot's queries in one forward pass. One worker type serves every slot
/// ([`Worker`]); a slot is a query type, an answer type and this.
pub trait SlotNet: Unpin + 'static {
    /// What a program's call asks.
    type Query: Clone + Send + Unpin + 'static;
    /// What the network answers to one query.
    type Answer: Send + Unpin + 'static;
    /// Whether `VPD_FAULT_WORKER_PANIC` targets this slot's workers.
    const FAULT: bool;
    /// `module@number`, for errors.
    fn label(&self) -> &str;
    /// One forward pass over `batch`: an answer per query, or the
    /// network's error (a user's module that raised, NaN or inf).
    fn answer(&mut self, batch: &[Self::Query]) -> Result<Vec<Self::Answer>, NnError>;
}

impl SlotNet for NeuralVqa {
    type Query = VqaQuery;
    type Answer = Vec<f32>;
    const FAULT: bool = true;
    fn label(&self) -> &str {
        &self.label
    }
    fn answer(&mut self, batch: &[VqaQuery]) -> Result<Vec<Vec<f32>>, NnError> {
        let ex: Vec<Example> = batch
            .iter()
            .map(|q| Example {
                images: vec![q.input.clone()],
                text: q.question.clone(),
                label: 0,
            })
            .collect();
        self.model.predict(&ex)
    }
}

impl SlotNet for NeuralLoc {
    type Query = LocQuery;
    type Answer = Vec<Detection>;
    const FAULT: bool = false;
    fn label(&self) -> &str {
        &self.label
    }
    fn answer(&mut self, batch: &[LocQuery]) -> Result<Vec<Vec<Detection>>, NnError> {
        let ex: Vec<DetExample> = batch
            .iter()
            .map(|q| DetExample {
                image: q.input.clone(),
                name: q.object.clone(),
                boxes: vec![],
            })
            .collect();
        self.detector.detect(&ex, &self.settings)
    }
}

/// A module's worker (a `SyncArbiter` thread): owns its slot's network and
/// answers a batch in one forward pass. A panic in the network's code
/// stops the worker (actix restarts it from its factory with a fresh
/// network) and fails the batch with [`WorkerError::Crashed`].
pub struct Worker<N: SlotNet> {
    /// The network, or why it did not load (every batch is then answered
    /// with that error).
    pub net: Result<N, WorkerError>,
    /// Counters.
    pub stats: Arc<WorkerStats>,
}

/// The VQA module's worker: the answer distribution of each query.
pub type VqaWorker = Worker<NeuralVqa>;
/// The LOC module's worker: the detections of each query.
pub type LocWorker = Worker<NeuralLoc>;

impl<N: SlotNet> Actor for Worker<N> {
    type Context = SyncContext<Self>;
}

impl<N: SlotNet> Handler<Batch<N::Query, N::Answer>> for Worker<N> {
    type Result = Result<Vec<N::Answer>, WorkerError>;
    fn handle(
        &mut self,
        msg: Batch<N::Query, N::Answer>,
        ctx: &mut SyncContext<Self>,
    ) -> Self::Result {
        let net = match &mut self.net {
            Ok(n) => n,
            Err(e) => return Err(e.clone()),
        };
        let stats = &self.stats;
        let run = catch_unwind(AssertUnwindSafe(|| {
            if N::FAULT && injected_fault() {
                panic!("injected worker fault (VPD_FAULT_WORKER_PANIC)");
            }
            let t0 = Mark::now();
            let out = net.answer(&msg.0);
            stats.busy(t0);
            out
        }));
        match run {
            Ok(Err(e)) => Err(WorkerError::Module {
                module: net.label().to_string(),
                message: e.to_string(),
            }),
            Ok(Ok(out)) => {
                self.stats.batches.fetch_add(1, Ordering::Relaxed);
                self.stats.queries.fetch_add(out.len(), Ordering::Relaxed);
                Ok(out)
            }
            Err(_) => {
                // actix restarts a stopped SyncArbiter worker from its
                // factory: a fresh network for the next batch.
                self.stats.restarts.fetch_add(1, Ordering::Relaxed);
                ctx.stop();
                Err(WorkerError::Crashed {
                    module: net.label().to_string(),
                })
            }
        }
    }
}

/// A query with where to send its answer.
pub struct Call<Q, R> {
    /// The query.
    pub query: Q,
    /// The answer goes here.
    pub reply: oneshot::Sender<Result<R, WorkerError>>,
}

impl<Q: 'static, R: 'static> Message for Call<Q, R> {
    type Result = ();
}

/// Gathers concurrent calls into batches for a module's workers (a
/// `SyncArbiter` of `workers` threads). Each worker has at most one batch
/// at a time: while all of them compute, calls gather, and the moment one
/// is free everything waiting (up to `max_batch`) leaves as its next
/// batch. When a worker is idle, a batch leaves once it holds `max_batch`
/// calls or `max_wait` after its first call. (Sending batches on a timer
/// alone queues many small batches in the mailbox while the workers are
/// busy.) A batch the worker fails is sent once more (the worker was
/// restarted); then its calls get the error.
pub struct Batcher<Q: Clone + Send + Unpin + 'static, R: Send + Unpin + 'static> {
    worker: Recipient<Batch<Q, R>>,
    max_batch: usize,
    max_wait: Duration,
    pending: VecDeque<Call<Q, R>>,
    generation: u64,
    workers: usize,
    busy: usize,
    /// The module's name and how long one batch may take.
    limit: Option<(String, Duration)>,
}

impl<Q: Clone + Send + Unpin + 'static, R: Send + Unpin + 'static> Batcher<Q, R> {
    /// A batcher in front of `worker`, a `SyncArbiter` of `workers` threads.
    pub fn new(
        worker: Recipient<Batch<Q, R>>,
        max_batch: usize,
        max_wait: Duration,
        workers: usize,
    ) -> Self {
        Batcher {
            worker,
            max_batch: max_batch.max(1),
            max_wait,
            pending: VecDeque::new(),
            generation: 0,
            workers: workers.max(1),
            busy: 0,
            limit: None,
        }
    }

    /// A batch that takes longer than `limit` fails its calls with
    /// [`WorkerError::TimedOut`] naming `module` (the worker's thread stays
    /// busy; the calls do not wait for it).
    pub fn with_limit(mut self, module: String, limit: Duration) -> Self {
        self.limit = Some((module, limit));
        self
    }

    /// Whether every worker has a batch.
    fn all_busy(&self) -> bool {
        self.busy >= self.workers
    }

    /// Sends the next batch if a worker is free.
    fn dispatch(&mut self, ctx: &mut Context<Self>) {
        if self.all_busy() || self.pending.is_empty() {
            return;
        }
        self.generation += 1;
        self.busy += 1;
        let n = self.pending.len().min(self.max_batch);
        let calls: Vec<Call<Q, R>> = self.pending.drain(..n).collect();
        let (queries, replies): (Vec<Q>, Vec<_>) =
            calls.into_iter().map(|c| (c.query, c.reply)).unzip();
        let worker = self.worker.clone();
        let limit = self.limit.clone();
        let fut = async move {
            let send = |q: Vec<Q>| {
                let req = worker.send(Batch::new(q));
                match &limit {
                    Some((_, d)) => req.timeout(*d),
                    None => req,
                }
            };
            let mut out = send(queries.clone()).await;
            // A crash is tried once more (the worker was restarted); a
            // module's own error or a time-out would only repeat.
            let again = !matches!(
                out,
                Ok(Ok(_)) | Ok(Err(WorkerError::Module { .. })) | Err(MailboxError::Timeout)
            );
            if again {
                out = send(queries).await;
            }
            let results = match out {
                Ok(Ok(r)) => Ok(r),
                Ok(Err(e)) => Err(e),
                Err(MailboxError::Timeout) => {
                    let (module, d) = limit.unwrap_or_default();
                    Err(WorkerError::TimedOut {
                        module,
                        seconds: d.as_secs_f64(),
                    })
                }
                Err(e) => Err(WorkerError::Unreachable(format!("worker unreachable: {e}"))),
            };
            match results {
                Ok(rs) => {
                    for (tx, r) in replies.into_iter().zip(rs) {
                        let _ = tx.send(Ok(r));
                    }
                }
                Err(e) => {
                    for tx in replies {
                        let _ = tx.send(Err(e.clone()));
                    }
                }
            }
        };
        ctx.spawn(fut.into_actor(self).map(|_, act, ctx| {
            act.busy -= 1;
            // What gathered meanwhile has waited long enough.
            act.dispatch(ctx);
            act.arm(ctx);
        }));
    }

    /// Starts the wait of the oldest pending call, if it has none running.
    fn arm(&mut self, ctx: &mut Context<Self>) {
        if self.all_busy() || self.pending.is_empty() {
            return;
        }
        let gen = self.generation;
        ctx.run_later(self.max_wait, move |a, ctx| {
            if a.generation == gen {
                a.dispatch(ctx);
            }
        });
    }
}

impl<Q: Clone + Send + Unpin + 'static, R: Send + Unpin + 'static> Actor for Batcher<Q, R> {
    type Context = Context<Self>;
}

impl<Q: Clone + Send + Unpin + 'static, R: Send + Unpin + 'static> Handler<Call<Q, R>>
    for Batcher<Q, R>
{
    type Result = ();
    fn handle(&mut self, msg: Call<Q, R>, ctx: &mut Context<Self>) {
        self.pending.push_back(msg);
        if self.all_busy() {
            return;
        }
        if self.pending.len() >= self.max_batch || self.max_wait.is_zero() {
            self.dispatch(ctx);
        } else if self.pending.len() == 1 {
            self.arm(ctx);
        }
    }
}

/// Asks the program generator for a program.
pub struct Generate {
    /// Example id (for the annotated generator's implicit wording).
    pub id: String,
    /// The question or statement.
    pub text: String,
    /// What the annotated generator works from (a GQA question's
    /// `semantic` program, or an NLVR2 example's program).
    pub source: GenerateSource,
}

/// What a program is generated from.
#[derive(Clone)]
pub enum GenerateSource {
    /// A GQA question, converted from its `semantic` program.
    Gqa(Box<crate::data::gqa::Question>),
    /// A program written with the example (synthetic NLVR2).
    Given(Option<String>),
    /// Nothing: the LLM writes it.
    None,
}

impl Message for Generate {
    type Result = Result<String, GenerateError>;
}

/// Why the program generator wrote no program for an example (that
/// example fails at generation; the others go on).
#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    /// The LLM cache could not be read or written.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// The LLM's answer was no valid program, or the endpoint failed (as
    /// cached, or as just asked).
    #[error("{0}")]
    Llm(String),
    /// A GQA `semantic` program that does not convert.
    #[error(transparent)]
    Convert(#[from] crate::program::convert::ConvertError),
    /// The example carries no program (the annotated generator on a line
    /// without one).
    #[error("the example has no program")]
    NoProgram,
    /// Nothing for the annotated generator to convert.
    #[error("the annotated generator needs an annotation")]
    NoAnnotation,
}

/// The program generator: `annotated` (GQA semantic programs converted,
/// NLVR2's own programs) or `llm` (an OpenAI-compatible endpoint, cached in
/// the store). A sync actor: the LLM call blocks.
pub struct ProgramGenerator {
    /// `None`: annotated.
    pub llm: Option<(crate::store::Store, crate::program::llm::LlmConfig)>,
    /// The task.
    pub task: crate::vocab::Task,
}

impl Actor for ProgramGenerator {
    type Context = SyncContext<Self>;
}

impl Handler<Generate> for ProgramGenerator {
    type Result = Result<String, GenerateError>;
    fn handle(&mut self, msg: Generate, _: &mut SyncContext<Self>) -> Self::Result {
        if let Some((store, cfg)) = &self.llm {
            return crate::program::llm::generate_cached(store, cfg, self.task, &msg.text)?
                .map_err(GenerateError::Llm);
        }
        match msg.source {
            GenerateSource::Gqa(q) => Ok(crate::program::convert::convert(
                &q,
                crate::program::run::implicit_for(&msg.id),
            )?),
            GenerateSource::Given(p) => p.ok_or(GenerateError::NoProgram),
            GenerateSource::None => Err(GenerateError::NoAnnotation),
        }
    }
}

/// The per-call time limit of a module batch: `VPD_MODULE_TIMEOUT_S`
/// seconds (default 600), a bad value an error naming the variable.
pub fn module_timeout() -> Result<Duration, String> {
    match std::env::var("VPD_MODULE_TIMEOUT_S") {
        Err(_) => Ok(Duration::from_secs(600)),
        Ok(v) => v
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|s| s.is_finite() && *s > 0.0 && *s <= 86_400.0)
            .map(Duration::from_secs_f64)
            .ok_or_else(|| {
                format!("VPD_MODULE_TIMEOUT_S={v}: expected seconds above 0 and at most 86400")
            }),
    }
}
