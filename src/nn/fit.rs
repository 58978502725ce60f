//! Distillation training: a student fitted to a teacher's soft labels (KL
//! divergence with a temperature, optionally cross-entropy to the
//! teacher's argmax), with an anti-forgetting term (replay of the generic
//! corpus with its own labels, and/or self-distillation from the parent
//! version on those replay examples), and early stopping on the
//! agreement with the teacher on a held-out dev slice.

use std::io::Cursor;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tch::nn::OptimizerConfig;
use tch::{nn, Kind, Tensor};

use super::model::{Example, Model};
use super::NnError;

/// A student input with the teacher's distribution over the student's
/// answers.
#[derive(Debug, Clone)]
pub struct SoftExample {
    /// The student's image(s) as `to_model_input` floats.
    pub images: Vec<Arc<Vec<f32>>>,
    /// The text the student is asked.
    pub text: String,
    /// Probabilities over the student's answers (sum 1).
    pub target: Vec<f32>,
}

impl SoftExample {
    /// The most probable answer of the target.
    pub fn argmax(&self) -> i64 {
        argmax(&self.target) as i64
    }
    fn example(&self) -> Example {
        Example {
            images: self.images.clone(),
            text: self.text.clone(),
            label: self.argmax(),
        }
    }
}

/// Index of the largest value (0 for an empty slice).
pub fn argmax(v: &[f32]) -> usize {
    v.iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map_or(0, |(i, _)| i)
}

/// Settings of a distillation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DistillConfig {
    /// Most epochs over the distillation samples.
    pub epochs: usize,
    /// Distillation samples per step (replay adds as many again).
    pub batch: usize,
    /// Adam learning rate.
    pub lr: f64,
    /// Softmax temperature of the KL term (both sides), scaled by T^2.
    pub temperature: f64,
    /// Weight of the cross-entropy to the teacher's argmax.
    pub ce_weight: f64,
    /// Weight of the cross-entropy on replayed generic examples.
    pub replay_weight: f64,
    /// Weight of the KL to the parent version on replayed examples (and
    /// on the anchor inputs).
    pub self_distill_weight: f64,
    /// Stop after this many epochs without better dev agreement.
    pub patience: usize,
    /// Seed of the sample order.
    pub seed: u64,
}

/// What a distillation did.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DistillReport {
    /// Mean loss per epoch.
    pub train_loss: Vec<f64>,
    /// Dev agreement with the teacher's argmax per epoch (before the first
    /// epoch at index 0).
    pub dev_agreement: Vec<f64>,
    /// The epoch whose weights were kept (0: the parent's weights).
    pub best_epoch: usize,
    /// Its dev agreement.
    pub best_dev_agreement: f64,
    /// Seconds.
    pub seconds: f64,
}

/// What keeps the student's other abilities: generic examples replayed
/// with their labels (and the parent's distribution on them), and anchor
/// inputs (no labels; e.g. the other task's steps) on which the student
/// is kept close to its parent.
#[derive(Debug, Clone, Copy, Default)]
pub struct Keep<'a> {
    /// Replayed examples with their labels.
    pub replay: &'a [Example],
    /// Anchor inputs (labels ignored).
    pub anchor: &'a [Example],
}

/// Share of `dev` where the model's most probable answer is the teacher's.
/// A forward pass with NaN or inf is an error saying training diverged.
pub fn agreement(model: &Model, dev: &[SoftExample]) -> Result<f64, NnError> {
    if dev.is_empty() {
        return Ok(0.0);
    }
    let ex: Vec<Example> = dev.iter().map(SoftExample::example).collect();
    Ok(model.evaluate(&ex).map_err(diverged)?.0)
}

fn diverged(e: NnError) -> NnError {
    match e {
        NnError::Output(m) => NnError::Output(format!(
            "the student {m}: training diverged (a lower learning rate may help)"
        )),
        e => e,
    }
}

/// The parent's class probabilities on `xs` (inputs as the student takes
/// them), one row per example, on the student's device.
fn parent_probs(parent: &Model, student: &Model, xs: &[Example]) -> Result<Tensor, NnError> {
    let mut parts = Vec::new();
    tch::no_grad(|| -> Result<(), NnError> {
        for chunk in xs.chunks(256) {
            let refs: Vec<&Example> = chunk.iter().collect();
            let (x, t, _) = student.batch(&refs);
            parts.push(parent.logits(&x, &t)?.softmax(-1, Kind::Float));
        }
        Ok(())
    })?;
    Ok(Tensor::cat(&parts, 0))
}

/// Row indices as an index tensor on `like`'s device.
fn rows(ix: &[usize], like: &Tensor) -> Tensor {
    let ix: Vec<i64> = ix.iter().map(|i| *i as i64).collect();
    Tensor::from_slice(&ix).to_device(like.device())
}

fn soft_kl(student_logits: &Tensor, target_probs: &Tensor, t: f64) -> Tensor {
    // The teacher's probabilities at temperature T: p^(1/T), renormalised.
    let p = (target_probs.clamp_min(1e-8).log() / t).softmax(-1, Kind::Float);
    let logq = (student_logits / t).log_softmax(-1, Kind::Float);
    (&p * (p.clamp_min(1e-8).log() - logq))
        .sum_dim_intlist(-1, false, Kind::Float)
        .mean(Kind::Float)
        * (t * t)
}

// `loss = loss + x` builds a new graph node; tch's `+=` would add in place
// into a tensor autograd has recorded.
#[allow(clippy::assign_op_pattern)]
/// Fits `student` to the teacher's soft labels in `train`; keeps the
/// weights of the epoch with the best dev agreement (the parent's own
/// weights count as epoch 0).
pub fn distill(
    student: &mut Model,
    parent: Option<&Model>,
    train: &[SoftExample],
    dev: &[SoftExample],
    keep: &Keep,
    cfg: &DistillConfig,
    progress: &dyn Fn(usize, f64, f64),
) -> Result<DistillReport, NnError> {
    let replay = keep.replay;
    let t0 = std::time::Instant::now();
    tch::manual_seed(cfg.seed as i64);
    let classes = student.meta.answers.list.len();
    if let Some(bad) = train.iter().chain(dev).find(|s| s.target.len() != classes) {
        return Err(NnError::Checkpoint(format!(
            "a soft label has {} classes, the student {classes}",
            bad.target.len()
        )));
    }
    let mut opt = nn::Adam::default().build(&student.vs, cfg.lr)?;
    let mut rng = crate::data::rng::Rng::new(cfg.seed, "distill-order");
    let mut order: Vec<usize> = (0..train.len()).collect();
    let mut replay_order: Vec<usize> = (0..replay.len()).collect();
    rng.shuffle(&mut replay_order);
    let mut next_replay = 0;
    // The anchors' own order, so that a run without anchors draws exactly
    // what it drew before they existed.
    let mut anchor_rng = crate::data::rng::Rng::new(cfg.seed, "distill-anchor-order");
    let mut anchor_order: Vec<usize> = (0..keep.anchor.len()).collect();
    anchor_rng.shuffle(&mut anchor_order);
    let mut next_anchor = 0;
    let mut report = DistillReport {
        best_dev_agreement: agreement(student, dev)?,
        ..Default::default()
    };
    report.dev_agreement.push(report.best_dev_agreement);
    let mut best: Option<Vec<u8>> = None;
    let b = cfg.batch.max(1);
    let use_replay =
        (cfg.replay_weight > 0.0 || cfg.self_distill_weight > 0.0) && !replay.is_empty();
    // The parent is frozen: its distributions on the replay and anchor
    // examples are computed once, not at every step they are drawn.
    let self_distill = parent.filter(|_| cfg.self_distill_weight > 0.0);
    let replay_parent = match self_distill {
        Some(p) if use_replay => Some(parent_probs(p, student, replay)?),
        _ => None,
    };
    let anchor_parent = match self_distill {
        Some(p) if !keep.anchor.is_empty() => Some(parent_probs(p, student, keep.anchor)?),
        _ => None,
    };
    for epoch in 1..=cfg.epochs {
        rng.shuffle(&mut order);
        let (mut total, mut steps) = (0.0, 0);
        for chunk in order.chunks(b) {
            let ex: Vec<Example> = chunk.iter().map(|i| train[*i].example()).collect();
            let refs: Vec<&Example> = ex.iter().collect();
            let (x, tok, y) = student.batch(&refs);
            let target: Vec<f32> = chunk
                .iter()
                .flat_map(|i| train[*i].target.iter().copied())
                .collect();
            let target = Tensor::from_slice(&target)
                .view([chunk.len() as i64, classes as i64])
                .to_device(student.vs.device());
            let logits = student.logits(&x, &tok)?;
            let mut loss = soft_kl(&logits, &target, cfg.temperature);
            if cfg.ce_weight > 0.0 {
                loss = loss + logits.cross_entropy_for_logits(&y) * cfg.ce_weight;
            }
            // The replay and anchor examples go through the student in
            // passes of their own: one pass over all three is the same sum
            // but was measured about a fifth slower on 2 CPU cores.
            if use_replay {
                let drawn: Vec<usize> = (0..b)
                    .map(|_| {
                        next_replay += 1;
                        replay_order[(next_replay - 1) % replay_order.len()]
                    })
                    .collect();
                let rx: Vec<&Example> = drawn.iter().map(|j| &replay[*j]).collect();
                let (rimg, rtok, ry) = student.batch(&rx);
                let rlogits = student.logits(&rimg, &rtok)?;
                if cfg.replay_weight > 0.0 {
                    loss = loss + rlogits.cross_entropy_for_logits(&ry) * cfg.replay_weight;
                }
                if let Some(pp) = &replay_parent {
                    let pp = pp.index_select(0, &rows(&drawn, pp));
                    loss = loss + soft_kl(&rlogits, &pp, cfg.temperature) * cfg.self_distill_weight;
                }
            }
            if let Some(pp) = &anchor_parent {
                let drawn: Vec<usize> = (0..b)
                    .map(|_| {
                        next_anchor += 1;
                        anchor_order[(next_anchor - 1) % anchor_order.len()]
                    })
                    .collect();
                let ax: Vec<&Example> = drawn.iter().map(|j| &keep.anchor[*j]).collect();
                let (aimg, atok, _) = student.batch(&ax);
                let alogits = student.logits(&aimg, &atok)?;
                let pp = pp.index_select(0, &rows(&drawn, pp));
                loss = loss + soft_kl(&alogits, &pp, cfg.temperature) * cfg.self_distill_weight;
            }
            opt.backward_step(&loss);
            total += loss.double_value(&[]);
            steps += 1;
        }
        let loss = total / steps.max(1) as f64;
        let acc = agreement(student, dev)?;
        report.train_loss.push(loss);
        report.dev_agreement.push(acc);
        progress(epoch, loss, acc);
        // Without a dev slice the last epoch is kept.
        if dev.is_empty() || acc > report.best_dev_agreement {
            report.best_dev_agreement = acc;
            report.best_epoch = epoch;
            let mut buf = Vec::new();
            student.vs.save_to_stream(&mut buf)?;
            best = Some(buf);
        } else if epoch - report.best_epoch >= cfg.patience.max(1) {
            break;
        }
    }
    match best {
        Some(b) => student.vs.load_from_stream(Cursor::new(b))?,
        // No epoch beat the parent on dev: keep the parent's weights.
        None => {
            if let Some(p) = parent {
                student.vs.copy(&p.vs)?;
            }
        }
    }
    report.seconds = t0.elapsed().as_secs_f64();
    Ok(report)
}
