//! Stepwise distillation, the method: the Teacher Input Adapter with its
//! visual pointer prompt (`adapter`), the Teacher and Trainer actors
//! (`actors`), and the distillation of each module (`vqa`, `loc`) over the
//! context every phase shares (`context`). `orchestrate` calls it; what it
//! is configured with comes from `experiment`.

pub mod actors;
pub mod adapter;
pub mod context;
pub mod loc;
pub mod vqa;
