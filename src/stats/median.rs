//! A cell's median over its windows, with the order-statistic interval of the median: with the
//! windows sorted, [x_(k), x_(n+1-k)] holds the median of the windows' distribution with
//! probability 1 - 2 P(B <= k - 1), B ~ Binomial(n, 1/2), whatever that (continuous) distribution
//! is. k is the largest rank that keeps this at 95 % or more; with fewer than 6 windows even
//! [min, max] falls short (5 windows: 93.8 %, 3 windows: 75 %), so there is no interval.

use super::{ln_choose, percentile, Estimate, LEVEL};

/// Fewest windows for a 95 % interval of the median: [min, max] of 6 covers 96.9 %.
pub const MIN_FOR_INTERVAL: usize = 6;

/// P(B <= j) for B ~ Binomial(n, 1/2).
fn binomial_half_cdf(n: usize, j: usize) -> f64 {
    let ln_half_n = n as f64 * 0.5f64.ln();
    (0..=j.min(n))
        .map(|i| (ln_choose(n, i) + ln_half_n).exp())
        .sum::<f64>()
        .min(1.0)
}

/// The rank k (1-based) of the interval [x_(k), x_(n+1-k)] and its exact coverage: the largest
/// k whose coverage is at least 95 %. `None` below [`MIN_FOR_INTERVAL`] values.
pub(super) fn median_rank(n: usize) -> Option<(usize, f64)> {
    let coverage = |k: usize| 1.0 - 2.0 * binomial_half_cdf(n, k - 1);
    let mut best = None;
    for k in 1..=n.div_ceil(2) {
        let c = coverage(k);
        if c < LEVEL {
            break;
        }
        best = Some((k, c));
    }
    best
}

/// The exact coverage of the interval [`median_ci95`] gives for `n` windows (e.g. 0.969 for 6),
/// `None` when `n` windows give none.
pub fn median_coverage(n: usize) -> Option<f64> {
    median_rank(n).map(|(_, c)| c)
}

/// The median of `values` with its distribution-free 95 % interval (order statistics, exact
/// binomial coverage of at least 95 %). `None` for no values; no interval for fewer than
/// [`MIN_FOR_INTERVAL`].
pub fn median_ci95(values: &[f64]) -> Option<Estimate> {
    if values.is_empty() {
        return None;
    }
    let point = percentile(values, 50.0);
    let Some((k, _)) = median_rank(values.len()) else {
        return Some((point, None));
    };
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    Some((point, Some((sorted[k - 1], sorted[values.len() - k]))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_and_coverages_are_the_binomial_ones() {
        // n = 5: [min, max] covers 1 - 2/32 = 93.75 %: not enough.
        assert_eq!(median_rank(5), None);
        assert_eq!(median_rank(3), None);
        // n = 6: [min, max], 1 - 2/64.
        let (k, c) = median_rank(6).unwrap();
        assert_eq!(k, 1);
        assert!((c - (1.0 - 2.0 / 64.0)).abs() < 1e-12);
        // n = 10: [x2, x9] covers 1 - 2 (1 + 10) / 1024 = 97.85 %; [x3, x8] only 89 %.
        let (k, c) = median_rank(10).unwrap();
        assert_eq!(k, 2);
        assert!((c - (1.0 - 22.0 / 1024.0)).abs() < 1e-12);
        // Many windows: the interval narrows toward the middle and the coverage stays >= 95 %.
        let (k, c) = median_rank(100).unwrap();
        assert!(
            (40..=41).contains(&k) && (LEVEL..0.97).contains(&c),
            "{k} {c}"
        );
        assert!(median_rank(1000).is_some());
    }

    #[test]
    fn the_median_and_its_interval_come_from_the_same_windows() {
        // Issue 18's cell, one slow window of three: the point is the median, with no interval.
        assert_eq!(median_ci95(&[7.33, 11.64, 7.38]), Some((7.38, None)));
        assert_eq!(median_ci95(&[]), None);
        // Six windows: [min, max] around the median.
        let v = [7.33, 11.64, 7.38, 7.35, 7.40, 7.36];
        let (p, ci) = median_ci95(&v).unwrap();
        assert!((p - 7.37).abs() < 1e-12);
        assert_eq!(ci, Some((7.33, 11.64)));
        // Ten windows: the second lowest and the second highest, so one odd window drops out.
        let v: Vec<f64> = (0..10).map(|i| 100.0 + i as f64 * 0.1).collect();
        let (_, ci) = median_ci95(&[&v[..9], &[130.0]].concat()).unwrap();
        let (lo, hi) = ci.unwrap();
        assert!(
            (lo - 100.1).abs() < 1e-9 && (hi - 100.8).abs() < 1e-9,
            "{lo} {hi}"
        );
    }
}
