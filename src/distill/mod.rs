//! Stepwise distillation: the Teacher Input Adapter with its visual pointer
//! prompt, the Teacher, Trainer and Coordinator actors, experiment files,
//! and `vpd run`.

pub mod actors;
pub mod adapter;
pub mod experiment;
pub mod run;
pub mod sweep;
