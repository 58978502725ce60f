//! Running experiments: `coordinator::run_trial` records a run and hands
//! its named `phases` to the Coordinator actor; `ensure` pre-trains what
//! the store lacks from the experiment's recipes; `evaluate` scores the
//! pipelines and gates the result. A sweep's trials run on one of two
//! backends beside each other: `local` (in this process) or `slurm` (a
//! job array, one store a trial, merged back).

mod coordinator;
mod ensure;
mod evaluate;
pub mod local;
mod phases;
pub mod slurm;

pub use coordinator::{cores, prepare_trial, run_trial};
pub use local::run_sweep;
