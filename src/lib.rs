//! visprog-distiller: stepwise distillation of the neural sub-modules of
//! visual programs (VisProg, ViperGPT), with an experiment orchestrator and a
//! versioned module store. The `vpd` binary is a thin layer over this crate.
#![deny(missing_docs)]

pub mod bench;
pub mod data;
pub mod distill;
pub mod doctor;
pub mod experiment;
pub mod machine;
pub mod measure;
pub mod models;
pub mod nn;
pub mod orchestrate;
pub mod output;
pub mod panics;
pub mod program;
pub mod report;
pub mod runtime;
pub mod stats;
pub mod store;
pub mod viper;
pub mod vocab;
