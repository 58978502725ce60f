//! The domain vocabulary shared by every part: the tasks, the corpora the
//! synthetic world writes, the neural slots of a pipeline and the kinds of
//! checkpoint. Each has one spelling (Display, FromStr and serde agree), so
//! no part compares strings or prints `{:?}` to name them.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A task: the questions and programs a pipeline is scored on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Task {
    /// GQA: one image, a question; programs start from `IMAGE`.
    Gqa,
    /// NLVR2: an image pair, a statement; programs start from `LEFT` and `RIGHT`.
    Nlvr2,
}

impl Task {
    /// Both tasks, GQA first.
    pub const ALL: [Task; 2] = [Task::Gqa, Task::Nlvr2];

    /// `gqa` or `nlvr2`.
    pub fn as_str(self) -> &'static str {
        match self {
            Task::Gqa => "gqa",
            Task::Nlvr2 => "nlvr2",
        }
    }

    /// The module name of this task's teacher in the store (`gqa-teacher`).
    pub fn teacher_module(self) -> String {
        format!("{self}-teacher")
    }
}

impl fmt::Display for Task {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Task {
    type Err = String;
    fn from_str(s: &str) -> Result<Task, String> {
        match s.to_ascii_lowercase().as_str() {
            "gqa" => Ok(Task::Gqa),
            "nlvr2" | "nlvr" => Ok(Task::Nlvr2),
            _ => Err(format!("unknown task `{s}` (gqa or nlvr2)")),
        }
    }
}

/// What the synthetic world writes: a task's data or the generic corpus the
/// students are pre-trained on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Corpus {
    /// GQA-format questions.
    Gqa,
    /// NLVR2-format statements.
    Nlvr2,
    /// The students' pre-training corpus (crops with attribute questions,
    /// images with boxes), in the `generic` rendering domain.
    Generic,
}

impl Corpus {
    /// The task this corpus is the data of (none for the generic corpus).
    pub fn task(self) -> Option<Task> {
        match self {
            Corpus::Gqa => Some(Task::Gqa),
            Corpus::Nlvr2 => Some(Task::Nlvr2),
            Corpus::Generic => None,
        }
    }

    /// `gqa`, `nlvr2` or `generic`.
    pub fn as_str(self) -> &'static str {
        match self {
            Corpus::Gqa => "gqa",
            Corpus::Nlvr2 => "nlvr2",
            Corpus::Generic => "generic",
        }
    }
}

impl From<Task> for Corpus {
    fn from(t: Task) -> Corpus {
        match t {
            Task::Gqa => Corpus::Gqa,
            Task::Nlvr2 => Corpus::Nlvr2,
        }
    }
}

impl fmt::Display for Corpus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Corpus {
    type Err = String;
    fn from_str(s: &str) -> Result<Corpus, String> {
        match s.to_ascii_lowercase().as_str() {
            "generic" => Ok(Corpus::Generic),
            other => other
                .parse::<Task>()
                .map(Corpus::from)
                .map_err(|_| format!("unknown task `{s}` (gqa, nlvr2 or generic)")),
        }
    }
}

/// A neural slot of a pipeline: the program module whose calls a network
/// answers. Displayed as the program spells the module (`VQA`), which is
/// also the slot's key in a stored pipeline; serde and the experiment files
/// use the store's module name (`vqa`). Ordered by that name, LOC first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Slot {
    /// Localisation: scored boxes of a named object.
    Loc,
    /// Visual question answering on an image (or a crop).
    Vqa,
}

impl Slot {
    /// Both slots.
    pub const ALL: [Slot; 2] = [Slot::Vqa, Slot::Loc];

    /// The program module and pipeline key: `VQA` or `LOC`.
    pub fn as_str(self) -> &'static str {
        match self {
            Slot::Vqa => "VQA",
            Slot::Loc => "LOC",
        }
    }

    /// The store's module name of the built-in student: `vqa` or `loc`.
    pub fn module(self) -> &'static str {
        match self {
            Slot::Vqa => "vqa",
            Slot::Loc => "loc",
        }
    }
}

impl fmt::Display for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Slot {
    type Err = String;
    fn from_str(s: &str) -> Result<Slot, String> {
        match s.to_ascii_uppercase().as_str() {
            "VQA" => Ok(Slot::Vqa),
            "LOC" => Ok(Slot::Loc),
            _ => Err(format!("unknown slot `{s}` (VQA or LOC)")),
        }
    }
}

/// What a checkpoint or a user's TorchScript module is, as its metadata
/// or sidecar names it (`vqa-student`, `loc-student`, `gqa-teacher`,
/// `nlvr2-teacher`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ModelKind {
    /// A VQA student: image and question to an answer distribution.
    VqaStudent,
    /// A LOC student: image and object name to scored boxes.
    LocStudent,
    /// The GQA teacher: whole image and question to an answer.
    GqaTeacher,
    /// The NLVR2 teacher: an image pair and a statement to True/False.
    Nlvr2Teacher,
}

impl ModelKind {
    /// Every kind.
    pub const ALL: [ModelKind; 4] = [
        ModelKind::VqaStudent,
        ModelKind::LocStudent,
        ModelKind::GqaTeacher,
        ModelKind::Nlvr2Teacher,
    ];

    /// As metadata and sidecars spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            ModelKind::VqaStudent => "vqa-student",
            ModelKind::LocStudent => "loc-student",
            ModelKind::GqaTeacher => "gqa-teacher",
            ModelKind::Nlvr2Teacher => "nlvr2-teacher",
        }
    }

    /// Whether it answers VQA steps (a VQA student or the GQA teacher).
    pub fn answers_vqa(self) -> bool {
        matches!(self, ModelKind::VqaStudent | ModelKind::GqaTeacher)
    }

    /// The teacher of a task.
    pub fn teacher_of(task: Task) -> ModelKind {
        match task {
            Task::Gqa => ModelKind::GqaTeacher,
            Task::Nlvr2 => ModelKind::Nlvr2Teacher,
        }
    }
}

impl fmt::Display for ModelKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ModelKind {
    type Err = String;
    fn from_str(s: &str) -> Result<ModelKind, String> {
        ModelKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown kind `{s}` (vqa-student, loc-student, gqa-teacher or nlvr2-teacher)"
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_spelling_each_way() {
        for t in Task::ALL {
            assert_eq!(t.to_string().parse::<Task>(), Ok(t));
            assert_eq!(
                serde_json::to_string(&t).unwrap(),
                format!("\"{t}\""),
                "serde and Display agree"
            );
        }
        for c in [Corpus::Gqa, Corpus::Nlvr2, Corpus::Generic] {
            assert_eq!(c.to_string().parse::<Corpus>(), Ok(c));
            assert_eq!(serde_json::to_string(&c).unwrap(), format!("\"{c}\""));
        }
        for k in ModelKind::ALL {
            assert_eq!(k.to_string().parse::<ModelKind>(), Ok(k));
            assert_eq!(serde_json::to_string(&k).unwrap(), format!("\"{k}\""));
        }
        for s in Slot::ALL {
            assert_eq!(s.to_string().parse::<Slot>(), Ok(s));
            assert_eq!(s.module().parse::<Slot>(), Ok(s));
            assert_eq!(
                serde_json::to_string(&s).unwrap(),
                format!("\"{}\"", s.module())
            );
        }
    }

    #[test]
    fn unknown_names_are_refused_not_mapped() {
        assert!("generic".parse::<Task>().is_err());
        assert!("vqa2".parse::<Task>().is_err());
        assert!("count".parse::<Slot>().is_err());
        assert_eq!("NLVR".parse::<Task>(), Ok(Task::Nlvr2));
        assert_eq!(Corpus::from(Task::Nlvr2).task(), Some(Task::Nlvr2));
        assert_eq!(Corpus::Generic.task(), None);
    }
}
