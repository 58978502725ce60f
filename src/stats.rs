//! Every statistic vpd reports, in one place: intervals of accuracies and of
//! their differences, summaries over a sweep's trials, and the spread of
//! benchmark timings. Pure functions of numbers: no store, no networks.

use serde::{Deserialize, Serialize};

/// z for a two-sided 95% interval.
pub const Z95: f64 = 1.959_963_984_540_054;

/// 95% Wilson score interval of `correct` out of `n`, in [0, 1]; (0, 1) when
/// nothing was counted.
pub fn wilson_interval(correct: u64, n: u64) -> (f64, f64) {
    if n == 0 {
        return (0.0, 1.0);
    }
    let z = Z95;
    let n = n as f64;
    let p = correct as f64 / n;
    let denom = 1.0 + z * z / n;
    let centre = (p + z * z / (2.0 * n)) / denom;
    let half = z * (p * (1.0 - p) / n + z * z / (4.0 * n * n)).sqrt() / denom;
    ((centre - half).max(0.0), (centre + half).min(1.0))
}

/// Half-width, in points, of the 95% interval of the difference of two
/// independent proportions (`(accuracy, n)` each; normal approximation; an
/// empty side counts as the widest, p = 0.5 with n = 1).
pub fn diff_half_width(a: (f64, u64), b: (f64, u64)) -> f64 {
    let var = |(p, n): (f64, u64)| {
        if n == 0 {
            return 0.25;
        }
        p * (1.0 - p) / n as f64
    };
    100.0 * 1.96 * (var(a) + var(b)).sqrt()
}

/// The mean of per-example differences (distilled minus base, each -1, 0 or
/// 1) with its 95% interval, both in points.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Paired {
    /// Mean difference, points.
    pub points: f64,
    /// 95% interval, points.
    pub ci95: (f64, f64),
    /// Pairs.
    pub n: usize,
}

/// The paired difference of two pipelines over the same examples.
pub fn paired(diffs: &[f64]) -> Paired {
    let n = diffs.len();
    let mean = diffs.iter().sum::<f64>() / n.max(1) as f64;
    let var = diffs.iter().map(|d| (d - mean).powi(2)).sum::<f64>() / (n.max(2) - 1) as f64;
    let half = 1.96 * (var / n.max(1) as f64).sqrt();
    Paired {
        points: 100.0 * mean,
        ci95: (100.0 * (mean - half), 100.0 * (mean + half)),
        n,
    }
}

/// Mean and spread of one figure over a configuration's trials.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Stat {
    /// Mean.
    pub mean: f64,
    /// Sample standard deviation (0 for one trial).
    pub sd: f64,
    /// Smallest.
    pub min: f64,
    /// Largest.
    pub max: f64,
    /// Trials.
    pub trials: usize,
}

impl Stat {
    /// Of these values (`trials: 0` and zeros when there are none: read
    /// `trials` before the figures).
    pub fn of(v: &[f64]) -> Stat {
        let n = v.len();
        if n == 0 {
            return Stat::default();
        }
        let mean = v.iter().sum::<f64>() / n as f64;
        let sd = if n > 1 {
            (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt()
        } else {
            0.0
        };
        Stat {
            mean,
            sd,
            min: v.iter().cloned().fold(f64::INFINITY, f64::min),
            max: v.iter().cloned().fold(f64::NEG_INFINITY, f64::max),
            trials: n,
        }
    }
}

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
    /// Summarises measurements (empty input gives NaN, which JSON prints as
    /// null: not measured).
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

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-3
    }

    #[test]
    fn wilson_matches_the_textbook_values() {
        // 8 of 10: the Wilson 95% interval is [0.490, 0.943].
        let (lo, hi) = wilson_interval(8, 10);
        assert!(close(lo, 0.4902) && close(hi, 0.9433), "{lo} {hi}");
        assert_eq!(wilson_interval(0, 0), (0.0, 1.0));
        let (lo, hi) = wilson_interval(0, 50);
        assert!(close(lo, 0.0), "{lo}");
        assert!(hi > 0.0 && hi < 0.1);
    }

    #[test]
    fn paired_difference_and_its_interval() {
        let p = paired(&[1.0, 1.0, 0.0, 0.0]);
        assert!(close(p.points, 50.0));
        assert!(p.ci95.0 < 50.0 && p.ci95.1 > 50.0);
        assert_eq!(p.n, 4);
        let same = paired(&[0.0; 10]);
        assert_eq!((same.points, same.ci95), (0.0, (0.0, 0.0)));
        assert_eq!(paired(&[]).n, 0);
    }

    #[test]
    fn stat_and_spread() {
        let s = Stat::of(&[1.0, 2.0, 3.0]);
        assert!(close(s.mean, 2.0) && close(s.sd, 1.0));
        assert_eq!((s.min, s.max, s.trials), (1.0, 3.0, 3));
        assert_eq!(Stat::of(&[5.0]).sd, 0.0);
        let sp = Spread::of(vec![4.0, 1.0, 3.0, 2.0]);
        assert_eq!((sp.median, sp.min, sp.max, sp.n), (2.5, 1.0, 4.0, 4));
        assert!(Spread::of(vec![]).median.is_nan());
        assert!(close(diff_half_width((0.5, 100), (0.5, 100)), 13.859));
    }
}
