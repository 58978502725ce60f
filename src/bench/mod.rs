//! `vpd bench ...`: speed measured against a baseline in the same run.

pub mod data;
pub mod exec;
pub mod store;
pub mod train;

/// Median, minimum and maximum of a set of timings, in milliseconds.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Spread {
    /// Median.
    pub median: f64,
    /// Fastest.
    pub min: f64,
    /// Slowest.
    pub max: f64,
    /// How many measurements.
    pub n: usize,
}

impl Spread {
    /// Summarises measurements (empty input gives NaN).
    pub fn of(mut xs: Vec<f64>) -> Spread {
        xs.sort_by(|a, b| a.total_cmp(b));
        let n = xs.len();
        let median = match n {
            0 => f64::NAN,
            _ if n % 2 == 1 => xs[n / 2],
            _ => 0.5 * (xs[n / 2 - 1] + xs[n / 2]),
        };
        Spread {
            median,
            min: xs.first().copied().unwrap_or(f64::NAN),
            max: xs.last().copied().unwrap_or(f64::NAN),
            n,
        }
    }
}

/// Milliseconds since `t`.
pub(crate) fn ms(t: std::time::Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}
