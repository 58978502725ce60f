//! The actor runtime: programs executed through a program-generator actor
//! and one actor per neural module (a `SyncArbiter` worker that owns its
//! tch network, behind an async batcher), with the executor that bounds
//! the work in flight. Around it: `jobs` turns a data slice into jobs,
//! `score` scores a pipeline on a task's split and records it,
//! `teacher_eval` scores a teacher, `trace_page` replays one example.

pub mod actors;
mod calls;
pub mod exec;
pub mod jobs;
pub mod score;
pub mod teacher_eval;
pub mod threaded;
pub mod trace_page;
