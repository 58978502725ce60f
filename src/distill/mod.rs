//! Stepwise distillation: the Teacher Input Adapter with its visual pointer
//! prompt, the Teacher, Trainer and Coordinator actors, experiment files,
//! and `vpd run`.
//!
//! A run: `coordinator::run_trial` records it and hands `phases::phases`
//! to the Coordinator actor; the phases call `pretrain` for what the store
//! lacks, then `vqa` and `loc` for the distillation of each module; what
//! the run found is a `report::RunReport`.

pub mod actors;
pub mod adapter;
mod coordinator;
mod error;
pub mod experiment;
mod loc;
mod phases;
mod pretrain;
pub mod report;
pub mod slurm;
mod source;
pub mod sweep;
mod vqa;

pub use coordinator::{cores, prepare_trial, run_trial, Progress};
pub use error::RunError;
pub use report::RunReport;
