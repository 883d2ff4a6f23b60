//! Statistics shared by the measurement protocol and the analysis of its records: percentiles,
//! means, spreads, medians with bootstrap intervals (and ratios of them), Pareto fronts. Plain functions of numbers; this
//! module imports nothing of the crate, so `measure` (below the records) and `analysis` (above
//! them) can both use it.

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

/// Fewer values than this give a point without an interval: a bootstrap over two windows (or a
/// t-interval with one degree of freedom) says more about the method than about the data.
pub const MIN_FOR_INTERVAL: usize = 3;

/// Resamples per bootstrap interval. The generator is seeded with a constant, so the same values
/// give the same interval on every machine and `runner report` reproduces its bytes.
const BOOTSTRAP_RESAMPLES: usize = 1000;
const BOOTSTRAP_SEED: u64 = 0x5eed_0fb0_0757_a900;

/// SplitMix64: small, fast, and the same sequence everywhere.
struct SplitMix(u64);

impl SplitMix {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        ((z ^ (z >> 31)) % n as u64) as usize
    }
}

fn resampled_median(values: &[f64], rng: &mut SplitMix, scratch: &mut Vec<f64>) -> f64 {
    scratch.clear();
    scratch.extend((0..values.len()).map(|_| values[rng.below(values.len())]));
    percentile(scratch, 50.0)
}

/// A point with its 95 % interval, when there are enough values for one.
pub type Estimate = (f64, Option<(f64, f64)>);

/// The median of `values` with a 95 % percentile-bootstrap interval of the median: point and
/// interval from the same estimator. `None` for no values; no interval for fewer than
/// [`MIN_FOR_INTERVAL`].
pub fn median_ci95(values: &[f64]) -> Option<Estimate> {
    if values.is_empty() {
        return None;
    }
    let point = percentile(values, 50.0);
    if values.len() < MIN_FOR_INTERVAL {
        return Some((point, None));
    }
    let mut rng = SplitMix(BOOTSTRAP_SEED);
    let mut scratch = Vec::with_capacity(values.len());
    let medians: Vec<f64> = (0..BOOTSTRAP_RESAMPLES)
        .map(|_| resampled_median(values, &mut rng, &mut scratch))
        .collect();
    Some((
        point,
        Some((percentile(&medians, 2.5), percentile(&medians, 97.5))),
    ))
}

/// median(numerator) / median(denominator) with a 95 % percentile-bootstrap interval, both
/// sides resampled independently (the intervals of the two medians propagated into the ratio).
/// `None` when a side is empty or its median is not positive; no interval when a side has fewer
/// than [`MIN_FOR_INTERVAL`] values.
pub fn ratio_ci95(numerator: &[f64], denominator: &[f64]) -> Option<Estimate> {
    if numerator.is_empty() || denominator.is_empty() {
        return None;
    }
    let (n, d) = (percentile(numerator, 50.0), percentile(denominator, 50.0));
    if n <= 0.0 || d <= 0.0 {
        return None;
    }
    if numerator.len() < MIN_FOR_INTERVAL || denominator.len() < MIN_FOR_INTERVAL {
        return Some((n / d, None));
    }
    let mut rng = SplitMix(BOOTSTRAP_SEED);
    let mut scratch = Vec::new();
    let ratios: Vec<f64> = (0..BOOTSTRAP_RESAMPLES)
        .map(|_| {
            let a = resampled_median(numerator, &mut rng, &mut scratch);
            a / resampled_median(denominator, &mut rng, &mut scratch)
        })
        .collect();
    Some((
        n / d,
        Some((percentile(&ratios, 2.5), percentile(&ratios, 97.5))),
    ))
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
    fn median_and_its_bootstrap_interval_come_from_the_same_estimator() {
        // The example of issue 18: one slow window of three. The point is the median, and the
        // interval is the median's (here it spans the windows), not a t-interval around the mean.
        let (point, ci) = median_ci95(&[7.33, 11.64, 7.38]).unwrap();
        assert_eq!(point, 7.38);
        let (lo, hi) = ci.unwrap();
        assert!(lo <= point && point <= hi, "{lo} {hi}");
        assert!(lo >= 7.33 && hi <= 11.64, "within the data: {lo} {hi}");
        // Deterministic: the same values give the same bytes.
        assert_eq!(
            median_ci95(&[7.33, 11.64, 7.38]),
            median_ci95(&[7.33, 11.64, 7.38])
        );
        // Two windows: a point, no interval (never a negative one); none: nothing.
        assert_eq!(median_ci95(&[0.5, 1.1]), Some((0.8, None)));
        assert_eq!(median_ci95(&[]), None);
        // Many tight windows: a tight interval around the median.
        let v: Vec<f64> = (0..10).map(|i| 100.0 + i as f64 * 0.1).collect();
        let (p, ci) = median_ci95(&v).unwrap();
        let (lo, hi) = ci.unwrap();
        assert!(lo < p && p < hi && hi - lo < 1.0, "{lo} {p} {hi}");
    }

    #[test]
    fn ratios_propagate_both_intervals() {
        let a = [10.0, 10.2, 9.9, 10.1, 10.0];
        let b = [20.0, 20.5, 19.8, 20.2, 20.1];
        let (r, ci) = ratio_ci95(&b, &a).unwrap();
        assert!((r - 2.01).abs() < 1e-9, "{r}");
        let (lo, hi) = ci.unwrap();
        assert!(lo < r && r < hi && lo > 1.9 && hi < 2.1, "{lo} {hi}");
        // Identical runs: exactly 1, and the interval holds 1.
        let (r, ci) = ratio_ci95(&a, &a).unwrap();
        let (lo, hi) = ci.unwrap();
        assert!(r == 1.0 && lo <= 1.0 && hi >= 1.0);
        assert_eq!(ratio_ci95(&[2.0, 2.0], &[1.0, 1.0]), Some((2.0, None)));
        assert_eq!(ratio_ci95(&[], &a), None);
        assert_eq!(ratio_ci95(&a, &[0.0]), None);
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
