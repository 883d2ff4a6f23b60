//! Statistics shared by the measurement protocol and the analysis of its records: percentiles,
//! means, spreads, medians with their 95 % intervals (and ratios of them), Pareto fronts. Plain
//! functions of numbers; this module imports nothing of the crate, so `measure` (below the
//! records) and `analysis` (above them) can both use it.
//!
//! The intervals are chosen for the few windows a cell has (6 by default), where a bootstrap is
//! not the interval its label claims (with 3 windows the bootstrap interval of the median is
//! [min, max], a 75 % interval):
//! - `median.rs`: a cell's median with the distribution-free order-statistic interval, whose
//!   coverage is exact (binomial) for any continuous distribution of windows;
//! - `shift.rs`: the ratio of two cells (or two runs) as a Hodges–Lehmann estimate on the log
//!   scale with the exact Mann–Whitney interval.
//!
//! `coverage.rs` (tests) checks both by simulation.

#[cfg(test)]
mod coverage;
mod median;
mod shift;

pub use median::{median_ci95, median_coverage, MIN_FOR_INTERVAL};
pub use shift::{ratio_ci95, ratio_coverage, MIN_FOR_RATIO_INTERVAL};

/// Linear-interpolated percentile (numpy's default), `p` in 0..=100. `values` must be non-empty.
pub fn percentile(values: &[f64], p: f64) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = p / 100.0 * (v.len() - 1) as f64;
    let (lo, hi) = (rank.floor() as usize, rank.ceil() as usize);
    v[lo] + (v[hi] - v[lo]) * (rank - lo as f64)
}

pub fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len() as f64
}

/// Sample standard deviation (n - 1).
pub fn std_dev(values: &[f64]) -> f64 {
    let m = mean(values);
    (values.iter().map(|v| (v - m).powi(2)).sum::<f64>() / (values.len() - 1) as f64).sqrt()
}

pub fn coefficient_of_variation(values: &[f64]) -> Option<f64> {
    (values.len() >= 2).then(|| std_dev(values) / mean(values))
}

/// A point with its 95 % interval, when there are enough values for one.
pub type Estimate = (f64, Option<(f64, f64)>);

/// The confidence level every interval of the runner is built for (at least).
pub const LEVEL: f64 = 0.95;

/// ln C(n, k), by summing logarithms (n is at most a few thousand here).
fn ln_choose(n: usize, k: usize) -> f64 {
    let k = k.min(n - k);
    (0..k)
        .map(|i| ((n - i) as f64).ln() - ((i + 1) as f64).ln())
        .sum()
}

/// Indices of the points on the Pareto front when both coordinates are to be minimised: no other
/// point is at least as good in both and better in one. Sorted by the first coordinate.
pub fn pareto_front(points: &[(f64, f64)]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..points.len()).collect();
    order.sort_by(|&a, &b| {
        points[a]
            .0
            .total_cmp(&points[b].0)
            .then(points[a].1.total_cmp(&points[b].1))
    });
    let mut front = Vec::new();
    let mut best_y = f64::INFINITY;
    for i in order {
        if points[i].1 < best_y {
            best_y = points[i].1;
            front.push(i);
        }
    }
    front
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_interpolates_like_numpy() {
        let v = [4.0, 1.0, 3.0, 2.0];
        assert_eq!(percentile(&v, 50.0), 2.5);
        assert!((percentile(&v, 10.0) - 1.3).abs() < 1e-12);
        assert_eq!(percentile(&v, 100.0), 4.0);
        assert_eq!(percentile(&[7.0], 90.0), 7.0);
    }

    #[test]
    fn ln_choose_matches_small_binomials() {
        assert!((ln_choose(6, 3).exp() - 20.0).abs() < 1e-9);
        assert!((ln_choose(10, 0).exp() - 1.0).abs() < 1e-12);
        assert!((ln_choose(12, 6).exp() - 924.0).abs() < 1e-7);
    }

    #[test]
    fn pareto_front_keeps_the_non_dominated_points() {
        // (energy, error): 0 and 2 dominate 1 and 3; 4 ties 2 on energy but is worse.
        let pts = [
            (1.0, 5.0),
            (2.0, 6.0),
            (3.0, 1.0),
            (4.0, 2.0),
            (3.0, 3.0),
            (0.5, 9.0),
        ];
        assert_eq!(pareto_front(&pts), vec![5, 0, 2]);
        assert_eq!(pareto_front(&[]), Vec::<usize>::new());
    }

    #[test]
    fn coefficient_of_variation_is_sd_over_mean() {
        let cv = coefficient_of_variation(&[9.0, 10.0, 11.0]).unwrap();
        assert!((cv - 0.1).abs() < 1e-12);
    }
}
