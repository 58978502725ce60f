//! Experiment files (TOML): every key has a default, an unknown key or a
//! wrong type is refused naming it, and `--set KEY=VALUE` overrides a key
//! by its dotted path (a path that names no key is refused). The resolved
//! configuration is what a run records.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::templates::Pointer;
use crate::store::VersionRef;
use crate::vocab::{Slot, Task};

/// An experiment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Experiment {
    /// Its name (runs are listed by it).
    pub name: String,
    /// Seed of the distillation (sample order, replay order).
    pub seed: u64,
    /// Where the networks run: `cpu`, `cuda` or `cuda:N` (`vpd run
    /// --device` overrides it). Where a run executes, not what it is: a
    /// sweep's id and its finished trials do not depend on it.
    pub device: String,
    /// Synthetic data, made under the store when missing.
    pub data: DataCfg,
    /// How to pre-train what the store lacks.
    pub pretrain: PretrainCfg,
    /// The base pipeline's modules.
    pub modules: ModulesCfg,
    /// Each task's teacher (an empty string: none).
    pub teachers: TeachersCfg,
    /// The distillation.
    pub distill: DistillCfg,
    /// The evaluations.
    pub eval: EvalCfg,
    /// The cross-task regression gate.
    pub gate: GateCfg,
    /// What the Teacher Input Adapters say to the teachers.
    pub adapter: super::templates::AdapterCfg,
    /// Lists of values for dotted keys (`seed`, `distill.pointer`, ...):
    /// their cartesian product makes the trials of a sweep.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub sweep: BTreeMap<String, Vec<toml::Value>>,
}

/// The data: synthetic sizes (examples per split) and seed, and the tasks
/// whose data is a real folder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataCfg {
    /// Generic corpus (students' pre-training and replay).
    pub generic_n: usize,
    /// GQA.
    pub gqa_n: usize,
    /// NLVR2.
    pub nlvr2_n: usize,
    /// Generator seed.
    pub seed: u64,
    /// GQA in the real layout (an empty `root`: the synthetic world).
    pub gqa: RealCfg,
    /// NLVR2 in the real layout (an empty `root`: the synthetic world).
    pub nlvr2: RealCfg,
    /// With real data, whether vpd may fall back on its synthetic world
    /// where it has nothing real: pre-training missing students on the
    /// generic corpus, and replaying that corpus during distillation.
    pub allow_synthetic: bool,
    /// Megabytes of decoded images an execution keeps in memory (0: none
    /// kept, each read decodes again).
    pub image_cache_mb: usize,
}

/// The roles a dataset's splits play in a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Pre-training a teacher vpd makes.
    Train,
    /// The programs whose steps the teacher labels.
    Distill,
    /// Early stopping.
    Dev,
    /// The evaluations before and after, and the gate.
    Test,
}

impl Role {
    /// Every role.
    pub const ALL: [Role; 4] = [Role::Train, Role::Distill, Role::Dev, Role::Test];
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Role::Train => "train",
            Role::Distill => "distill",
            Role::Dev => "dev",
            Role::Test => "test",
        })
    }
}

/// One value per role.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Roles<T> {
    /// Pre-training a teacher vpd makes.
    pub train: T,
    /// The programs whose steps the teacher labels.
    pub distill: T,
    /// Early stopping.
    pub dev: T,
    /// The evaluations and the gate.
    pub test: T,
}

impl<T> Roles<T> {
    /// The value of `r`.
    pub fn of(&self, r: Role) -> &T {
        match r {
            Role::Train => &self.train,
            Role::Distill => &self.distill,
            Role::Dev => &self.dev,
            Role::Test => &self.test,
        }
    }
}

/// A task's dataset in the real published layout. Splits left out take
/// the task's real names (GQA: `train_balanced` for train and distill,
/// `val_balanced`, `testdev_balanced`; NLVR2: `train`, `dev`, `test1`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RealCfg {
    /// The dataset's folder (empty: the synthetic world).
    pub root: String,
    /// The images' folder when it is not `root/images` (empty: that).
    pub images: String,
    /// The real split each role reads, by its file's stem
    /// (`testdev_balanced` for `questions/testdev_balanced_questions.json`).
    pub splits: Roles<String>,
    /// The first example each role reads: two roles on one split must not
    /// overlap.
    pub offsets: Roles<usize>,
    /// Most examples a teacher vpd pre-trains reads (0: all from its
    /// offset); the other roles' sizes are `distill.samples`,
    /// `distill.dev_samples` and `eval.limit`.
    pub train_limit: usize,
    /// Programs: `annotated` (GQA's `semantic` converted; NLVR2 lines'
    /// own `program`, which real lines lack) or `llm` (the endpoint from
    /// VPD_LLM_BASE_URL, VPD_LLM_MODEL, as `vpd eval` has it).
    pub generator: String,
    /// With `llm`: a few-shot prompt file replacing the built-in one (its
    /// hash is part of the program cache key).
    pub prompt: String,
}

impl Experiment {
    /// How many examples role `r` of `task`'s real folder reads (0: all
    /// from its offset): `train_limit`, `distill.samples`,
    /// `distill.dev_samples`, `eval.limit`.
    pub fn role_size(&self, task: Task, r: Role) -> usize {
        match r {
            Role::Train => self.data.real(task).train_limit,
            Role::Distill => self.distill.samples,
            Role::Dev => self.distill.dev_samples,
            Role::Test => self.eval.limit,
        }
    }
}

impl DataCfg {
    /// The real-layout settings of `task`.
    pub fn real(&self, task: Task) -> &RealCfg {
        match task {
            Task::Gqa => &self.gqa,
            Task::Nlvr2 => &self.nlvr2,
        }
    }
}

/// Two roles that read overlapping parts of one split: `(a, b, split)`.
/// `sizes` gives each role's example count (0: to the split's end).
pub fn overlap(
    real: &RealCfg,
    roles: &[Role],
    size: impl Fn(Role) -> usize,
) -> Option<(Role, Role, String)> {
    let range = |r: Role| {
        let a = *real.offsets.of(r);
        let n = size(r);
        (
            a,
            if n == 0 {
                usize::MAX
            } else {
                a.saturating_add(n)
            },
        )
    };
    for (i, &a) in roles.iter().enumerate() {
        for &b in &roles[i + 1..] {
            if real.splits.of(a) != real.splits.of(b) {
                continue;
            }
            let ((a0, a1), (b0, b1)) = (range(a), range(b));
            if a0 < b1 && b0 < a1 {
                return Some((a, b, real.splits.of(a).clone()));
            }
        }
    }
    None
}

impl RealCfg {
    /// Fills what was left out with the task's real split names and the
    /// annotated generator.
    pub(crate) fn fill(&mut self, task: Task) {
        let (train, dev, test) = match task {
            Task::Gqa => ("train_balanced", "val_balanced", "testdev_balanced"),
            Task::Nlvr2 => ("train", "dev", "test1"),
        };
        let s = &mut self.splits;
        for (slot, name) in [
            (&mut s.train, train),
            (&mut s.distill, train),
            (&mut s.dev, dev),
            (&mut s.test, test),
        ] {
            if slot.is_empty() {
                *slot = name.to_string();
            }
        }
        if self.generator.is_empty() {
            self.generator = "annotated".into();
        }
    }

    /// Whether the task reads a real folder.
    pub fn is_real(&self) -> bool {
        !self.root.is_empty()
    }
}

/// Pre-training recipes, used only for versions the store lacks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PretrainCfg {
    /// Most epochs of the VQA student.
    pub vqa_epochs: usize,
    /// Most epochs of the LOC student.
    pub loc_epochs: usize,
    /// Most epochs of a teacher.
    pub teacher_epochs: usize,
    /// Start the NLVR2 teacher from the GQA teacher's weights.
    pub nlvr2_from_gqa: bool,
    /// Seed of the weights.
    pub seed: u64,
    /// Examples per Adam step.
    pub batch: usize,
    /// Adam's learning rate.
    pub lr: f64,
    /// Epochs without a better dev score before training stops.
    pub patience: usize,
    /// Examples per split of the generic corpus the students are
    /// pre-trained on (0: `data.generic_n`).
    pub students_n: usize,
    /// Examples per split of the GQA data the GQA teacher is pre-trained on
    /// (0: `data.gqa_n`); a teacher may learn from more data than the
    /// distillation uses.
    pub gqa_teacher_n: usize,
    /// The same for the NLVR2 teacher (0: `data.nlvr2_n`).
    pub nlvr2_teacher_n: usize,
    /// Most epochs of the GQA teacher (0: `teacher_epochs`).
    pub gqa_teacher_epochs: usize,
    /// Most epochs of the NLVR2 teacher (0: `teacher_epochs`).
    pub nlvr2_teacher_epochs: usize,
    /// Take a missing student or GQA teacher from the checkpoints shipped
    /// with vpd (`checkpoints/quickstart/`) when one was made by exactly
    /// this recipe, instead of training it.
    pub shipped: bool,
}

impl PretrainCfg {
    /// The most epochs and examples per split of a built-in module's
    /// recipe (none: not a built-in module).
    pub fn recipe(&self, data: &DataCfg, module: &str) -> Option<(usize, usize)> {
        let or = |x: usize, y: usize| if x > 0 { x } else { y };
        Some(match module {
            "vqa" => (self.vqa_epochs, or(self.students_n, data.generic_n)),
            "loc" => (self.loc_epochs, or(self.students_n, data.generic_n)),
            "gqa-teacher" => (
                or(self.gqa_teacher_epochs, self.teacher_epochs),
                or(self.gqa_teacher_n, data.gqa_n),
            ),
            "nlvr2-teacher" => (
                or(self.nlvr2_teacher_epochs, self.teacher_epochs),
                or(self.nlvr2_teacher_n, data.nlvr2_n),
            ),
            _ => return None,
        })
    }
}

/// The base pipeline's module versions (MODULE@REF).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModulesCfg {
    /// VQA.
    #[serde(with = "version_ref")]
    pub vqa: VersionRef,
    /// LOC.
    #[serde(with = "version_ref")]
    pub loc: VersionRef,
}

/// Teacher versions (MODULE@REF; `""` in a file or `--set`: none for that
/// task).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TeachersCfg {
    /// GQA.
    #[serde(with = "optional_ref")]
    pub gqa: Option<VersionRef>,
    /// NLVR2.
    #[serde(with = "optional_ref")]
    pub nlvr2: Option<VersionRef>,
}

impl TeachersCfg {
    /// The teacher of `task`, if the experiment names one.
    pub fn of(&self, task: Task) -> Option<&VersionRef> {
        match task {
            Task::Gqa => self.gqa.as_ref(),
            Task::Nlvr2 => self.nlvr2.as_ref(),
        }
    }
}

/// A `MODULE@REF` written as that string.
mod version_ref {
    use crate::store::VersionRef;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(r: &VersionRef, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&r.to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<VersionRef, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// An optional `MODULE@REF`: the empty string is none (TOML has no null,
/// and `--set 'teachers.nlvr2=""'` is how a user says none).
mod optional_ref {
    use crate::store::VersionRef;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(r: &Option<VersionRef>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&r.as_ref().map(|r| r.to_string()).unwrap_or_default())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<VersionRef>, D::Error> {
        let s = Option::<String>::deserialize(d)?.unwrap_or_default();
        if s.is_empty() {
            return Ok(None);
        }
        s.parse().map(Some).map_err(serde::de::Error::custom)
    }
}

/// The distillation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DistillCfg {
    /// The task whose distill split supervises the students.
    pub task: Task,
    /// Slots to distil (`vqa`, `loc`).
    #[serde(deserialize_with = "distillable")]
    pub modules: Vec<Slot>,
    /// Visual pointer prompt: none, name, name+box.
    pub pointer: Pointer,
    /// Distill-split examples whose programs are run (0: all).
    pub samples: usize,
    /// Dev-split examples whose steps early stopping watches.
    pub dev_samples: usize,
    /// Pseudo-labels whose top probability is below this are dropped.
    pub confidence: f64,
    /// KL temperature.
    pub temperature: f64,
    /// Weight of cross-entropy to the teacher's argmax.
    pub ce_weight: f64,
    /// Weight of replayed generic examples (their own labels).
    pub replay: f64,
    /// Generic train examples available for replay.
    pub replay_samples: usize,
    /// Weight of self-distillation from the parent on replayed examples
    /// (and on the anchor steps).
    pub self_distill: f64,
    /// The other task's distill-split examples whose VQA steps (inputs
    /// only, no answers) anchor the student to its parent (0: none).
    pub anchor_other: usize,
    /// Most epochs.
    pub epochs: usize,
    /// Batch.
    pub batch: usize,
    /// Adam learning rate.
    pub lr: f64,
    /// Epochs without better dev agreement before stopping.
    pub patience: usize,
    /// LOC: the parent's detections above this score are the candidates
    /// the teacher verifies.
    pub loc_candidates: f64,
    /// LOC: a candidate is accepted when the teacher's P(yes) is at least
    /// this.
    pub loc_accept: f64,
}

/// The evaluations.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EvalCfg {
    /// Tasks evaluated (before and after).
    pub tasks: Vec<Task>,
    /// Split.
    pub split: String,
    /// First N examples of each task's split (0: all).
    pub limit: usize,
}

/// The gate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GateCfg {
    /// Most accuracy points the distilled version may lose on any task.
    pub max_drop: f64,
    /// The alias moved to the distilled version when the gate passes.
    pub alias: String,
}

impl Default for Experiment {
    fn default() -> Self {
        let mut e = Experiment {
            name: "experiment".into(),
            seed: 0,
            device: "cpu".into(),
            data: DataCfg::default(),
            pretrain: PretrainCfg::default(),
            modules: ModulesCfg::default(),
            teachers: TeachersCfg::default(),
            distill: DistillCfg::default(),
            eval: EvalCfg::default(),
            gate: GateCfg::default(),
            adapter: Default::default(),
            sweep: BTreeMap::new(),
        };
        e.fill();
        e
    }
}

impl Default for DataCfg {
    fn default() -> Self {
        DataCfg {
            generic_n: 4000,
            gqa_n: 1000,
            nlvr2_n: 1000,
            seed: 0,
            gqa: RealCfg::default(),
            nlvr2: RealCfg::default(),
            allow_synthetic: false,
            image_cache_mb: 2048,
        }
    }
}

impl Default for PretrainCfg {
    fn default() -> Self {
        PretrainCfg {
            vqa_epochs: 20,
            loc_epochs: 20,
            teacher_epochs: 20,
            nlvr2_from_gqa: true,
            seed: 0,
            batch: 64,
            lr: 2e-3,
            patience: 3,
            students_n: 0,
            gqa_teacher_n: 0,
            nlvr2_teacher_n: 0,
            gqa_teacher_epochs: 0,
            nlvr2_teacher_epochs: 0,
            shipped: false,
        }
    }
}

impl Default for ModulesCfg {
    fn default() -> Self {
        ModulesCfg {
            vqa: VersionRef::new("vqa", "base"),
            loc: VersionRef::new("loc", "base"),
        }
    }
}

impl Default for TeachersCfg {
    fn default() -> Self {
        TeachersCfg {
            gqa: Some(VersionRef::new("gqa-teacher", "teacher")),
            nlvr2: Some(VersionRef::new("nlvr2-teacher", "teacher")),
        }
    }
}

impl Default for DistillCfg {
    fn default() -> Self {
        DistillCfg {
            task: Task::Gqa,
            modules: vec![Slot::Vqa],
            pointer: Pointer::Name,
            samples: 1000,
            dev_samples: 300,
            confidence: 0.0,
            temperature: 2.0,
            ce_weight: 0.0,
            replay: 1.0,
            replay_samples: 4000,
            self_distill: 1.0,
            anchor_other: 0,
            epochs: 20,
            batch: 64,
            lr: 2e-3,
            patience: 4,
            loc_candidates: 0.05,
            loc_accept: 0.5,
        }
    }
}

impl Default for EvalCfg {
    fn default() -> Self {
        EvalCfg {
            tasks: vec![Task::Gqa, Task::Nlvr2],
            split: "test".into(),
            limit: 1000,
        }
    }
}

impl Default for GateCfg {
    fn default() -> Self {
        GateCfg {
            max_drop: 1.0,
            alias: "distilled".into(),
        }
    }
}

/// A trial's swept keys with their values, in the sweep table's order.
pub type SweptValues = Vec<(String, toml::Value)>;

/// `distill.modules`: the slots by their module names, with the reason an
/// unknown one is refused.
fn distillable<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<Slot>, D::Error> {
    let names = Vec::<String>::deserialize(d)?;
    names
        .iter()
        .map(|m| match m.as_str() {
            "vqa" => Ok(Slot::Vqa),
            "loc" => Ok(Slot::Loc),
            _ => Err(serde::de::Error::custom(format!(
                "`distill.modules`: `{m}` cannot be distilled (vqa, loc)"
            ))),
        })
        .collect()
}
