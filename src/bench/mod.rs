//! `vpd bench ...`: speed measured against a baseline in the same run.

pub mod data;
pub mod exec;
pub mod real_eval;
pub mod sandbox;
pub mod store;
pub mod train;

pub use crate::stats::Spread;

/// Milliseconds since `t`.
pub(crate) fn ms(t: std::time::Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}
