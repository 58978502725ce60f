//! The actor runtime: programs executed through a program-generator actor
//! and one actor per neural module (a `SyncArbiter` worker that owns its
//! tch network, behind an async batcher), with the executor that bounds
//! the work in flight; `eval` scores a pipeline on a task's split.

pub mod actors;
pub mod eval;
pub mod exec;
