//! Integration tests: one test crate, one module per area, to keep link
//! time low.

mod bench_train;
mod byo;
mod common;
mod data;
mod device;
mod distill;
mod doctor;
mod domain_gap;
mod fuzz_records;
mod gqa_semantics;
mod hostile;
mod llm;
mod models;
mod nn_basics;
mod programs;
mod real_data;
mod report;
mod runtime;
mod shipped;
mod slurm;
mod store_cli;
mod store_crash;
mod store_model;
mod tidy;
mod viper;
