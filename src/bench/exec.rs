//! `vpd bench exec`: programs per second through the actors with batching
//! against the sequential mode (one program at a time, batches of one),
//! same networks, data, thread count and image cache, rounds interleaved;
//! the two modes' predictions must be identical. It also accounts for
//! the CPU time of each mode and works out the ceiling of the speedup on
//! the machine it runs on (see [`Ceiling`]).

use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;

use super::Spread;
use crate::models;
use crate::nn::detector::DetExample;
use crate::nn::model::Example;
use crate::nn::DeviceChoice;
use crate::runtime::actors::input_of;
use crate::runtime::exec::{self, ExecConfig, ImageCache, Job, ModuleChoice};
use crate::runtime::jobs::Slice;
use crate::runtime::score::EvalError;
use crate::runtime::teacher_eval;
use crate::store::Store;
use crate::vocab::Task;

/// The result.
#[derive(Debug, Clone, Serialize)]
pub struct ExecBench {
    /// Median programs per second, batched.
    pub batched_programs_per_s: f64,
    /// Median programs per second, sequential.
    pub sequential_programs_per_s: f64,
    /// Their ratio.
    pub speedup: f64,
    /// Mean VQA batch reached in batched mode.
    pub mean_batch: f64,
    /// Mean LOC batch reached in batched mode.
    pub mean_loc_batch: f64,
    /// Most programs in flight in batched mode.
    pub max_in_flight: usize,
    /// Per mode, the median over rounds of each module's workers' seconds
    /// in forward passes (summed) and the round's wall-clock seconds: where the time
    /// goes.
    pub busy: BusyTimes,
    /// Programs per round.
    pub programs: usize,
    /// Batched programs per second over the rounds.
    pub batched: Spread,
    /// Sequential programs per second over the rounds.
    pub sequential: Spread,
    /// Whether every prediction agreed (asserted).
    pub predictions_identical: bool,
    /// Batched settings.
    pub config: ExecConfig,
    /// libtorch threads of the sequential mode's workers (1 unless
    /// `--sequential-threads`; the batched mode's workers have one each).
    pub sequential_threads: usize,
    /// The most the speedup can be on this machine, and what it is made of.
    pub ceiling: Ceiling,
    /// The batched mode on a GPU in the same rounds (`--device cuda`);
    /// null when it was not run.
    pub device: Option<DeviceMode>,
}

/// The batched mode on a GPU, measured in the same rounds as the CPU modes.
#[derive(Debug, Clone, Serialize)]
pub struct DeviceMode {
    /// The GPU (`cuda:N`).
    pub device: String,
    /// Programs per second over the rounds.
    pub programs: Spread,
    /// Its median over the batched CPU mode's.
    pub speedup_vs_cpu: f64,
    /// Mean VQA batch reached.
    pub mean_batch: f64,
    /// Mean LOC batch reached.
    pub mean_loc_batch: f64,
    /// Programs whose prediction (or error) equals the CPU modes' (the
    /// GPU's float rounding differs, so this is counted, not asserted).
    pub agreeing: usize,
    /// Its settings.
    pub config: ExecConfig,
}

/// The most the speedup can be on this machine with these networks, from
/// figures measured in the same run. A batched round takes at least
/// `min_round_s` = (`rest_cpu_s` + `forward_alone_s`) / `cores`: every
/// core busy all through it, every forward pass at its cost alone on one
/// core at the mean batch the batched mode reached (no contention), and
/// the rest of the work (programs, actors, batching: the batched round's
/// CPU time outside the workers' forward passes) as measured.
/// `speedup` = the sequential round / `min_round_s`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Ceiling {
    /// Cores of the machine.
    pub cores: usize,
    /// The bound.
    pub speedup: f64,
    /// The measured speedup as a share of the bound, 0-1.
    pub reached: f64,
    /// The forward passes of a round at the costs alone, CPU seconds.
    pub forward_alone_s: f64,
    /// Batched round: CPU seconds outside the workers' forward passes.
    pub rest_cpu_s: f64,
    /// The least a batched round can take, seconds.
    pub min_round_s: f64,
    /// Batch at which the batched costs were measured (VQA, LOC; 0 for an
    /// oracle slot).
    pub batch: [usize; 2],
    /// VQA network alone on one core: milliseconds a query at batch 1 and
    /// at `batch[0]` (0 for an oracle slot).
    pub vqa_ms: [f64; 2],
    /// LOC network likewise.
    pub loc_ms: [f64; 2],
}

/// Worker busy time against wall time, per mode (medians over rounds).
#[derive(Debug, Clone, Default, Serialize)]
pub struct BusyTimes {
    /// Batched: wall seconds of a round.
    pub batched_wall_s: f64,
    /// Batched: VQA workers' seconds in forward passes (summed).
    pub batched_vqa_s: f64,
    /// Batched: LOC workers' seconds in forward passes (summed).
    pub batched_loc_s: f64,
    /// Sequential: wall seconds of a round.
    pub sequential_wall_s: f64,
    /// Sequential: VQA worker seconds in forward passes.
    pub sequential_vqa_s: f64,
    /// Sequential: LOC worker seconds in forward passes.
    pub sequential_loc_s: f64,
    /// Batched: CPU seconds of a round (every thread).
    pub batched_cpu_s: f64,
    /// Sequential: CPU seconds of a round.
    pub sequential_cpu_s: f64,
    /// Batched: CPU seconds of the workers' threads in forward passes
    /// (VQA and LOC).
    pub batched_forward_cpu_s: f64,
    /// Sequential: CPU seconds of the worker's thread in forward passes
    /// (its libtorch helper threads, with `--sequential-threads` above 1,
    /// not counted).
    pub sequential_forward_cpu_s: f64,
    /// Batched: CPU seconds outside the workers' forward passes (the
    /// median of each round's difference).
    pub batched_rest_cpu_s: f64,
    /// VQA queries a round (the same in both modes).
    pub vqa_queries: usize,
    /// LOC queries a round.
    pub loc_queries: usize,
}

impl ExecBench {
    /// Measured rounds.
    pub fn rounds_measured(&self) -> usize {
        self.batched.n
    }
}

/// Runs `rounds` rounds of both modes on the first `programs` GQA test
/// questions with `vqa` and `loc`, the sequential mode's workers with
/// `sequential_threads` libtorch threads each (the batched mode's with
/// one), then measures the networks alone for the ceiling.
#[allow(clippy::too_many_arguments)]
pub fn run(
    store: &Store,
    vqa: &ModuleChoice,
    loc: &ModuleChoice,
    programs: usize,
    rounds: usize,
    sequential_threads: usize,
    (device, gpu_batch): (DeviceChoice, usize),
    progress: &dyn Fn(&str),
) -> Result<ExecBench, EvalError> {
    let sequential_threads = sequential_threads.max(1);
    crate::nn::set_threads(1);
    let data = teacher_eval::task_data(store, Task::Gqa, 1000)?;
    let mut jobs = Slice::synthetic(&data, "test").jobs(Task::Gqa, true)?;
    jobs.truncate(programs);
    let cache = ImageCache::default();
    let batched_cfg = ExecConfig::batched(1);
    let gpu_cfg = (device != DeviceChoice::Cpu).then(|| batched_cfg.on(device, gpu_batch));
    // 0 batched, 1 sequential, 2 batched on the GPU; the order turns each
    // round.
    let modes = if gpu_cfg.is_some() { 3 } else { 2 };
    let (mut g, mut g_batch, mut agreeing) = (Vec::new(), (0.0, 0.0), usize::MAX);
    let (mut b, mut s) = (Vec::new(), Vec::new());
    let (mut bt, mut st) = (Vec::new(), Vec::new());
    let mut queries = (0, 0);
    let (mut mean_batch, mut mean_loc, mut max_in_flight) = (0.0, 0.0, 0);
    for round in 0..=rounds {
        let mut preds = vec![Vec::new(); modes];
        for k in 0..modes {
            let mode = (k + round) % modes;
            let batched = mode == 0;
            let cfg = match (mode, gpu_cfg) {
                (0, _) => batched_cfg,
                (2, Some(c)) => c,
                _ => ExecConfig::sequential(),
            };
            crate::nn::set_threads(if mode == 1 { sequential_threads } else { 1 } as i32);
            let r = exec::execute(
                store,
                &jobs,
                Task::Gqa,
                vqa,
                loc,
                None,
                cfg,
                &cache,
                &|_| {},
            )?;
            let rate = jobs.len() as f64 / r.seconds;
            if mode == 2 {
                if round > 0 {
                    g.push(rate);
                    g_batch = (r.vqa_mean_batch, r.loc_mean_batch);
                }
                preds[2] = r
                    .outcomes
                    .into_iter()
                    .map(|o| (o.predicted, o.error))
                    .collect::<Vec<_>>();
                continue;
            }
            // Round 0 warms the image cache and the allocator.
            if round > 0 {
                let t = [
                    r.seconds,
                    r.vqa_busy_seconds,
                    r.loc_busy_seconds,
                    r.cpu_seconds,
                    r.vqa_cpu_seconds + r.loc_cpu_seconds,
                    (r.cpu_seconds - r.vqa_cpu_seconds - r.loc_cpu_seconds).max(0.0),
                ];
                queries = (r.vqa_queries, r.loc_queries);
                if batched {
                    bt.push(t);
                    b.push(rate);
                    mean_batch = r.vqa_mean_batch;
                    mean_loc = r.loc_mean_batch;
                    max_in_flight = r.max_in_flight;
                } else {
                    st.push(t);
                    s.push(rate);
                }
            }
            preds[mode] = r
                .outcomes
                .into_iter()
                .map(|o| (o.predicted, o.error))
                .collect::<Vec<_>>();
        }
        if modes == 3 {
            let same = preds[2]
                .iter()
                .zip(&preds[0])
                .filter(|(a, b)| a == b)
                .count();
            agreeing = agreeing.min(same);
        }
        if preds[0] != preds[1] {
            let diff = preds[0]
                .iter()
                .zip(&preds[1])
                .filter(|(a, b)| a != b)
                .count();
            return Err(EvalError::ModesDisagree {
                differ: diff,
                of: jobs.len(),
            });
        }
        progress(&format!("round {round}/{rounds}"));
    }
    let (bs, ss) = (Spread::of(b), Spread::of(s));
    crate::nn::set_threads(1);
    let med = |v: &[[f64; 6]], k: usize| Spread::of(v.iter().map(|x| x[k]).collect()).median;
    let busy = BusyTimes {
        batched_wall_s: med(&bt, 0),
        batched_vqa_s: med(&bt, 1),
        batched_loc_s: med(&bt, 2),
        sequential_wall_s: med(&st, 0),
        sequential_vqa_s: med(&st, 1),
        sequential_loc_s: med(&st, 2),
        batched_cpu_s: med(&bt, 3),
        sequential_cpu_s: med(&st, 3),
        batched_forward_cpu_s: med(&bt, 4),
        sequential_forward_cpu_s: med(&st, 4),
        batched_rest_cpu_s: med(&bt, 5),
        vqa_queries: queries.0,
        loc_queries: queries.1,
    };
    progress("the networks alone on one core");
    let batch = |m: &ModuleChoice, mean: f64| match m {
        ModuleChoice::Oracle => 0,
        ModuleChoice::Version(_) => (mean.round() as usize).clamp(1, batched_cfg.max_batch),
    };
    let batch = [batch(vqa, mean_batch), batch(loc, mean_loc)];
    let alone = alone_costs(store, vqa, loc, &jobs, &cache, batch)?;
    let ceiling = ceiling(&busy, batch, alone, bs.median / ss.median);
    Ok(ExecBench {
        batched_programs_per_s: bs.median,
        sequential_programs_per_s: ss.median,
        speedup: bs.median / ss.median,
        mean_batch,
        mean_loc_batch: mean_loc,
        max_in_flight,
        busy,
        programs: jobs.len(),
        batched: bs,
        sequential: ss,
        predictions_identical: true,
        config: batched_cfg,
        sequential_threads,
        ceiling,
        device: gpu_cfg.map(|config| {
            let gs = Spread::of(g);
            DeviceMode {
                device: device.to_string(),
                speedup_vs_cpu: gs.median / bs.median,
                programs: gs,
                mean_batch: g_batch.0,
                mean_loc_batch: g_batch.1,
                agreeing: agreeing.min(jobs.len()),
                config,
            }
        }),
    })
}

/// The bound of [`Ceiling`] from a run's medians and the networks' costs
/// alone (`[batch 1, batched]` milliseconds a query, VQA then LOC).
fn ceiling(b: &BusyTimes, batch: [usize; 2], alone: [[f64; 2]; 2], speedup: f64) -> Ceiling {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let forward = (b.vqa_queries as f64 * alone[0][1] + b.loc_queries as f64 * alone[1][1]) / 1e3;
    let min_round = (b.batched_rest_cpu_s + forward) / cores as f64;
    let bound = if min_round > 0.0 {
        b.sequential_wall_s / min_round
    } else {
        f64::INFINITY
    };
    Ceiling {
        cores,
        speedup: bound,
        reached: speedup / bound,
        forward_alone_s: forward,
        rest_cpu_s: b.batched_rest_cpu_s,
        min_round_s: min_round,
        batch,
        vqa_ms: alone[0],
        loc_ms: alone[1],
    }
}

/// Milliseconds a query of each network alone on this thread (one
/// libtorch thread), at batch 1 and at `batch` (VQA, LOC; zeros for an
/// oracle slot or a batch of 0): the least of 7 timings of at least 128
/// queries each (the cost alone: anything else running only adds), on the
/// inputs of the first jobs (a forward pass costs the same whatever the
/// pixels and words).
fn alone_costs(
    store: &Store,
    vqa: &ModuleChoice,
    loc: &ModuleChoice,
    jobs: &[Job],
    cache: &ImageCache,
    batch: [usize; 2],
) -> Result<[[f64; 2]; 2], EvalError> {
    type Inputs = Vec<(Arc<Vec<f32>>, String)>;
    let images = |side: u32| -> Result<Inputs, EvalError> {
        jobs.iter()
            .take(32)
            .map(|j| {
                let (_, path) = j.inputs.first().ok_or_else(|| EvalError::Input {
                    example: j.id.clone(),
                    message: "no input image".into(),
                })?;
                let img = cache.get(path).map_err(|e| EvalError::Input {
                    example: j.id.clone(),
                    message: e.to_string(),
                })?;
                Ok((input_of(&img, side), j.text.clone()))
            })
            .collect()
    };
    let time = |b: usize, n: usize, f: &mut dyn FnMut(usize)| -> f64 {
        if b == 0 || n == 0 {
            return 0.0;
        }
        let calls = 128usize.div_ceil(b);
        f(b);
        (0..7)
            .map(|_| {
                let t = Instant::now();
                for _ in 0..calls {
                    f(b);
                }
                t.elapsed().as_secs_f64() * 1e3 / (calls * b) as f64
            })
            .fold(f64::INFINITY, f64::min)
    };
    let mut out = [[0.0; 2]; 2];
    if let (ModuleChoice::Version(r), b) = (vqa, batch[0]) {
        let net = models::load_vqa(store, r, DeviceChoice::Cpu)?;
        let inputs = images(net.model.meta.film.image_size as u32)?;
        let mut failed = None;
        let mut run = |b: usize| {
            let ex: Vec<Example> = (0..b)
                .map(|i| {
                    let (img, text) = &inputs[i % inputs.len()];
                    Example {
                        images: vec![img.clone()],
                        text: text.clone(),
                        label: 0,
                    }
                })
                .collect();
            if let Err(e) = net.model.predict(&ex) {
                failed.get_or_insert(e);
            }
        };
        out[0] = [
            time(1, inputs.len(), &mut run),
            time(b, inputs.len(), &mut run),
        ];
        if let Some(e) = failed {
            return Err(crate::models::ModelError::from(e).into());
        }
    }
    if let (ModuleChoice::Version(r), b) = (loc, batch[1]) {
        let net = models::load_loc(store, r, DeviceChoice::Cpu)?;
        let inputs = images(net.detector.image_size() as u32)?;
        let mut failed = None;
        let mut run = |b: usize| {
            let ex: Vec<DetExample> = (0..b)
                .map(|i| {
                    let (img, text) = &inputs[i % inputs.len()];
                    DetExample {
                        image: img.clone(),
                        name: text.clone(),
                        boxes: vec![],
                    }
                })
                .collect();
            if let Err(e) = net.detector.detect(&ex, &net.settings) {
                failed.get_or_insert(e);
            }
        };
        out[1] = [
            time(1, inputs.len(), &mut run),
            time(b, inputs.len(), &mut run),
        ];
        if let Some(e) = failed {
            return Err(crate::models::ModelError::from(e).into());
        }
    }
    Ok(out)
}
