//! Summary statistics for benchmark samples: mean, sample standard deviation, min/max,
//! percentiles (linear interpolation between order statistics, numpy's default) and a 95%
//! confidence interval of the mean from Student's t distribution.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Summary {
    pub n: usize,
    pub mean: f64,
    pub stddev: f64,
    pub min: f64,
    pub max: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    /// Half-width of the 95% confidence interval of the mean.
    pub ci95: f64,
}

impl Summary {
    pub fn of(samples: &[f64]) -> Self {
        let n = samples.len();
        if n == 0 {
            return Self::default();
        }
        let mut sorted = samples.to_vec();
        sorted.sort_by(f64::total_cmp);
        let mean = samples.iter().sum::<f64>() / n as f64;
        let var = if n > 1 { samples.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64 } else { 0.0 };
        let stddev = var.sqrt();
        let ci95 = if n > 1 { t_critical_95(n - 1) * stddev / (n as f64).sqrt() } else { 0.0 };
        Self {
            n,
            mean,
            stddev,
            min: sorted[0],
            max: sorted[n - 1],
            p50: percentile(&sorted, 50.0),
            p90: percentile(&sorted, 90.0),
            p99: percentile(&sorted, 99.0),
            ci95,
        }
    }

    /// Scales every value (e.g. seconds to milliseconds).
    pub fn scaled(&self, k: f64) -> Self {
        Self {
            n: self.n,
            mean: self.mean * k,
            stddev: self.stddev * k,
            min: self.min * k,
            max: self.max * k,
            p50: self.p50 * k,
            p90: self.p90 * k,
            p99: self.p99 * k,
            ci95: self.ci95 * k,
        }
    }

    /// Whether the 95% intervals of two means do not overlap: the difference is larger than noise.
    pub fn differs_from(&self, other: &Summary) -> bool {
        (self.mean - other.mean).abs() > self.ci95 + other.ci95
    }
}

/// Percentile `p` (0..=100) of sorted data, linear interpolation.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = p / 100.0 * (sorted.len() - 1) as f64;
    let lo = rank.floor() as usize;
    let hi = rank.ceil() as usize;
    sorted[lo] + (sorted[hi] - sorted[lo]) * (rank - lo as f64)
}

/// Two-sided 95% critical value of Student's t with `df` degrees of freedom.
pub fn t_critical_95(df: usize) -> f64 {
    const TABLE: [f64; 30] = [
        12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080,
        2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
    ];
    match df {
        0 => f64::INFINITY,
        1..=30 => TABLE[df - 1],
        31..=60 => 2.042 - (df - 30) as f64 * (2.042 - 2.000) / 30.0,
        61..=120 => 2.000 - (df - 60) as f64 * (2.000 - 1.980) / 60.0,
        _ => 1.960,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_matches_hand_computation() {
        // numpy: mean 3, std(ddof=1) 1.5811388, percentile 50/90/99 = 3, 4.6, 4.96.
        let s = Summary::of(&[5.0, 1.0, 4.0, 2.0, 3.0]);
        assert_eq!((s.n, s.min, s.max), (5, 1.0, 5.0));
        assert!((s.mean - 3.0).abs() < 1e-12);
        assert!((s.stddev - 1.5811388300841898).abs() < 1e-12);
        assert!((s.p50 - 3.0).abs() < 1e-12 && (s.p90 - 4.6).abs() < 1e-12 && (s.p99 - 4.96).abs() < 1e-12);
        // t(4) = 2.776: half-width 2.776 * 1.5811 / sqrt(5) = 1.96296.
        assert!((s.ci95 - 1.9629).abs() < 1e-3, "{}", s.ci95);
    }

    #[test]
    fn noise_verdict() {
        let a = Summary::of(&[10.0, 10.1, 9.9, 10.0]);
        let b = Summary::of(&[20.0, 20.1, 19.9, 20.0]);
        let c = Summary::of(&[10.05, 9.95, 10.0, 10.02]);
        assert!(a.differs_from(&b));
        assert!(!a.differs_from(&c));
    }
}
