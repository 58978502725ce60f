//! What an experiment is: its TOML file read and validated (`spec`,
//! `validate`), the adapters' templates it gives (`templates`), where each
//! task's data comes from (`source`), sweeps' identities and summaries
//! (`sweep`), what a run reports (`report`), how it fails (`error`) and
//! how long work shows its progress (`progress`). Nothing here runs a
//! network or starts an actor: `orchestrate` runs experiments, `distill`
//! holds the method.

pub mod error;
pub mod progress;
pub mod report;
pub mod source;
pub mod spec;
pub mod sweep;
pub mod templates;
mod validate;

pub use error::RunError;
pub use progress::Progress;
pub use report::RunReport;
pub use spec::*;
pub use validate::{max_synth_n, ConfigError};
