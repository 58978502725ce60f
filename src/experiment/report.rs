//! What a run reports: the table per task, pseudo-label quality, the
//! training, the gates; stored with the run and printed by `vpd run` and
//! `vpd show`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::spec::Experiment;
use crate::nn::detector::DetTrainReport;
use crate::nn::fit::DistillReport;
use crate::runtime::score::Score;
use crate::store::GateReport;

/// Accuracy difference of two pipelines on the same examples.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Difference {
    /// Distilled minus base, points.
    pub points: f64,
    /// 95% interval of the paired difference, points.
    pub ci95: (f64, f64),
    /// Examples both scored.
    pub n: usize,
}

/// One task's row of the table.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskRow {
    /// The teacher end to end (none: no teacher for this task).
    pub teacher: Option<Score>,
    /// The oracle-module pipeline (null: not measured, the split has no
    /// scene graphs).
    pub oracle: Option<Score>,
    /// The base pipeline.
    pub base: Score,
    /// The distilled pipeline.
    pub distilled: Score,
    /// Distilled minus base.
    pub difference: Difference,
    /// The stored evaluations: base and distilled.
    pub evaluations: (String, String),
}

/// Pseudo-labels of one pointer mode against ground truth.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ModeAccuracy {
    /// Steps the adapter had a rule for.
    pub n: usize,
    /// Whose pseudo-label (the soft label's argmax) is right.
    pub correct: usize,
    /// Percent (null: no step could be scored, not measured).
    pub accuracy: Option<f64>,
    /// Steps whose question the pointer rewrote.
    pub rewritten: usize,
}

impl ModeAccuracy {
    /// Percent right of `correct` out of `n`; none when `n` is 0.
    pub fn percent(correct: usize, n: usize) -> Option<f64> {
        (n > 0).then(|| 100.0 * correct as f64 / n as f64)
    }
}

/// The pseudo-labels of a run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PseudoLabels {
    /// The distilled task.
    pub task: String,
    /// VQA steps of the distill split's programs.
    pub steps: usize,
    /// Steps the adapter has no rule for.
    pub unadapted: usize,
    /// Steps whose ground truth the oracle could not give (not scored).
    pub unscored: usize,
    /// Share of the VQA steps the pointer rewrote, percent.
    pub rewritten_share: f64,
    /// Accuracy per pointer mode.
    pub by_mode: BTreeMap<String, ModeAccuracy>,
    /// The parent student's own answers at the same steps, scored the same
    /// way (what the pseudo-labels have to beat).
    pub student: ModeAccuracy,
    /// The mode used for training.
    pub used: String,
    /// The confidence threshold.
    pub confidence: f64,
    /// Samples kept after the threshold (the training set).
    pub kept: usize,
    /// Accuracy of the kept samples' labels, percent (null: none of them
    /// could be scored).
    pub kept_accuracy: Option<f64>,
    /// Dev-slice samples (for early stopping).
    pub dev: usize,
}

/// What a run did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunReport {
    /// The run's id.
    pub run_id: String,
    /// The experiment.
    pub experiment: String,
    /// Its seed.
    pub seed: u64,
    /// Per task: teacher, oracle, base, distilled, difference.
    pub tasks: BTreeMap<String, TaskRow>,
    /// VQA pseudo-label accuracy of the mode used, percent (none when
    /// VQA was not distilled).
    pub pseudo_label_accuracy: Option<f64>,
    /// VQA pseudo-labels in detail.
    pub pseudo_labels: Option<PseudoLabels>,
    /// LOC's verified pseudo-boxes (when LOC was distilled).
    pub loc_pseudo_boxes: Option<LocPseudo>,
    /// Whether the cross-task gate passed for every distilled module.
    pub gate_passed: bool,
    /// The gate of each distilled module against its parent.
    pub gates: BTreeMap<String, GateReport>,
    /// Whether the alias moved for every distilled module.
    pub alias_moved: bool,
    /// The versions the alias moved to.
    pub aliases_moved: Vec<String>,
    /// The versions used and made (`vqa` the new one, `vqa_parent`,
    /// `loc`, the teachers) as MODULE@NUMBER.
    pub versions: BTreeMap<String, String>,
    /// The same versions by id: numbers are a store's own (a merge gives
    /// another store's versions new ones), ids are not. Absent in runs
    /// recorded before vpd kept them.
    #[serde(default)]
    pub version_ids: BTreeMap<String, uuid::Uuid>,
    /// The VQA training.
    pub training: Option<DistillReport>,
    /// The LOC training.
    pub loc_training: Option<DetTrainReport>,
    /// Versions pre-trained because the store lacked them.
    pub pretrained: Vec<String>,
    /// Versions imported from vpd's shipped checkpoints because the store
    /// lacked them (`pretrain.shipped`).
    #[serde(default)]
    pub shipped: Vec<String>,
    /// The data every phase read (`distill`, `dev`, `test TASK`, `replay`,
    /// `pretrain MODULE@REF`), real or synthetic, in words.
    #[serde(default)]
    pub data: BTreeMap<String, String>,
    /// Versions the run reused from the store that were made with another
    /// pre-training recipe than the experiment's, with the differences
    /// (the run's figures then do not come from the file alone).
    #[serde(default)]
    pub recipe_differences: BTreeMap<String, Vec<String>>,
    /// Seconds per phase.
    pub seconds: BTreeMap<String, f64>,
    /// The machine the run's times were measured on (absent in runs
    /// recorded before vpd noted it).
    #[serde(default)]
    pub machine: Option<crate::machine::Machine>,
    /// The resolved configuration.
    pub config: Experiment,
}

/// LOC's teacher-verified pseudo-boxes against ground truth.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LocPseudo {
    /// LOC steps (named objects) of the distill split's programs.
    pub steps: usize,
    /// Candidate boxes (the parent LOC at the candidate threshold).
    pub candidates: usize,
    /// Candidates the teacher accepted.
    pub accepted: usize,
    /// Steps with at least one accepted box (the training examples).
    pub examples: usize,
    /// Dev-slice examples.
    pub dev: usize,
    /// Precision and recall at IoU 0.5 of the accepted boxes, percent.
    pub verified: (f64, f64),
    /// ... of all candidates.
    pub all_candidates: (f64, f64),
    /// ... of the parent LOC at its own threshold (what it answers in
    /// programs).
    pub parent: (f64, f64),
    /// Steps whose ground truth was scored.
    pub scored: usize,
}

#[cfg(test)]
mod tests {
    use super::ModeAccuracy;

    #[test]
    fn nothing_scored_is_not_measured_not_zero() {
        assert_eq!(ModeAccuracy::percent(0, 0), None);
        assert_eq!(ModeAccuracy::percent(0, 4), Some(0.0));
        assert_eq!(ModeAccuracy::percent(3, 4), Some(75.0));
    }
}
