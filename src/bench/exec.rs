//! `vpd bench exec`: programs per second through the actors with batching
//! against the sequential mode (one program at a time, batches of one),
//! same networks, data, thread count and image cache, rounds interleaved;
//! the two modes' predictions must be identical.

use serde::Serialize;

use super::Spread;
use crate::data::synth::Task;
use crate::program::validate;
use crate::runtime::eval::{self, EvalError};
use crate::runtime::exec::{self, ExecConfig, ImageCache, ModuleChoice};
use crate::store::Store;

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
/// questions with `vqa` and `loc`.
pub fn run(
    store: &Store,
    vqa: &ModuleChoice,
    loc: &ModuleChoice,
    programs: usize,
    rounds: usize,
    progress: &dyn Fn(&str),
) -> Result<ExecBench, EvalError> {
    let data = eval::task_data(store, Task::Gqa, 1000)?;
    let mut jobs = eval::jobs(Task::Gqa, &data, "test")?;
    jobs.truncate(programs);
    let cache = ImageCache::default();
    let batched_cfg = ExecConfig::batched(crate::nn::threads());
    let (mut b, mut s) = (Vec::new(), Vec::new());
    let (mut bt, mut st) = (Vec::new(), Vec::new());
    let mut queries = (0, 0);
    let (mut mean_batch, mut mean_loc, mut max_in_flight) = (0.0, 0.0, 0);
    for round in 0..=rounds {
        let mut preds = Vec::new();
        for k in 0..2 {
            let batched = (k + round) % 2 == 0;
            let cfg = if batched {
                batched_cfg
            } else {
                ExecConfig::sequential()
            };
            let r = exec::execute(
                store,
                &jobs,
                validate::Task::Gqa,
                vqa,
                loc,
                None,
                cfg,
                &cache,
                &|_| {},
            )?;
            let rate = jobs.len() as f64 / r.seconds;
            // Round 0 warms the image cache and the allocator.
            if round > 0 {
                let t = [r.seconds, r.vqa_busy_seconds, r.loc_busy_seconds];
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
            preds.push(
                r.outcomes
                    .into_iter()
                    .map(|o| (o.predicted, o.error))
                    .collect::<Vec<_>>(),
            );
        }
        if preds[0] != preds[1] {
            let diff = preds[0]
                .iter()
                .zip(&preds[1])
                .filter(|(a, b)| a != b)
                .count();
            return Err(EvalError::Invalid(format!(
                "batched and sequential predictions differ on {diff} of {} programs",
                jobs.len()
            )));
        }
        progress(&format!("round {round}/{rounds}"));
    }
    let (bs, ss) = (Spread::of(b), Spread::of(s));
    let med = |v: &[[f64; 3]], k: usize| Spread::of(v.iter().map(|x| x[k]).collect()).median;
    let busy = BusyTimes {
        batched_wall_s: med(&bt, 0),
        batched_vqa_s: med(&bt, 1),
        batched_loc_s: med(&bt, 2),
        sequential_wall_s: med(&st, 0),
        sequential_vqa_s: med(&st, 1),
        sequential_loc_s: med(&st, 2),
        vqa_queries: queries.0,
        loc_queries: queries.1,
    };
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
    })
}
