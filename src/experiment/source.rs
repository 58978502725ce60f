//! Where each task's data comes from in a run: the synthetic world (made
//! under the store, keyed by its generator config) or a folder in the real
//! published layout (`[data.gqa]`, `[data.nlvr2]`), with its split per role.

use std::path::PathBuf;

use super::error::RunError;
use super::spec::{Experiment, RealCfg, Role};
use crate::program::llm::LlmConfig;
use crate::runtime::jobs::{Layout, Slice};
use crate::vocab::Task;

/// One task's data in a run.
#[derive(Debug, Clone)]
pub enum Source {
    /// A synthetic folder under the store.
    Synthetic {
        /// The folder.
        dir: PathBuf,
        /// The split the evaluations read (`eval.split`).
        test: String,
    },
    /// A real folder.
    Real {
        /// Its settings.
        cfg: Box<RealCfg>,
        /// The LLM generator, when the settings name it.
        llm: Option<LlmConfig>,
    },
}

impl Source {
    /// The synthetic world's folder for a task.
    pub fn synthetic(dir: PathBuf, exp: &Experiment) -> Source {
        Source::Synthetic {
            dir,
            test: exp.eval.split.clone(),
        }
    }

    /// The task's real folder, checked: it exists and has the split of
    /// every role in `roles` (the train role is read, and so checked,
    /// only when a teacher is pre-trained on it), and the generator's
    /// settings are complete.
    pub fn real(task: Task, cfg: &RealCfg, roles: &[Role]) -> Result<Source, RunError> {
        let root = PathBuf::from(&cfg.root);
        if !root.is_dir() {
            return Err(RunError::RealData(format!(
                "`data.{task}.root` = {}: no such folder",
                root.display()
            )));
        }
        let llm = match cfg.generator.as_str() {
            "llm" => {
                let mut c = LlmConfig::from_env().map_err(|e| {
                    RunError::RealData(format!("`data.{task}.generator` = \"llm\": {e}"))
                })?;
                if !cfg.prompt.is_empty() {
                    let text = std::fs::read_to_string(&cfg.prompt).map_err(|e| {
                        RunError::RealData(format!("`data.{task}.prompt` = {}: {e}", cfg.prompt))
                    })?;
                    c.prompt = Some(text);
                }
                Some(c)
            }
            _ => None,
        };
        let s = Source::Real {
            cfg: Box::new(cfg.clone()),
            llm,
        };
        for r in roles {
            s.slice(*r, 0).check(task)?;
        }
        Ok(s)
    }

    /// Whether the data is a real folder.
    pub fn is_real(&self) -> bool {
        matches!(self, Source::Real { .. })
    }

    /// The LLM generator (none: the annotated one).
    pub fn llm(&self) -> Option<LlmConfig> {
        match self {
            Source::Real { llm, .. } => llm.clone(),
            Source::Synthetic { .. } => None,
        }
    }

    /// What role `r` reads: `n` examples from its offset (0: all).
    pub fn slice(&self, r: Role, n: usize) -> Slice {
        match self {
            Source::Synthetic { dir, test } => {
                let split = match r {
                    Role::Test => test.clone(),
                    r => r.to_string(),
                };
                Slice::synthetic(dir, &split).first(n)
            }
            Source::Real { cfg, .. } => Slice {
                data: PathBuf::from(&cfg.root),
                layout: Layout::Real {
                    images: (!cfg.images.is_empty()).then(|| PathBuf::from(&cfg.images)),
                },
                split: cfg.splits.of(r).clone(),
                offset: *cfg.offsets.of(r),
                limit: None,
            }
            .first(n),
        }
    }

    /// What role `r` reads, in words for the report: the dataset key, and
    /// whether it is real or synthetic.
    pub fn describe(&self, task: Task, r: Role, n: usize) -> String {
        let s = self.slice(r, n);
        let key = s.key(task).unwrap_or_else(|_| s.split.clone());
        match self {
            Source::Synthetic { .. } => format!("{key} (synthetic)"),
            Source::Real { cfg, .. } => format!("{key} (real: {})", cfg.root),
        }
    }
}
