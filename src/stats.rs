//! Statistics shared by the measurement protocol and the analysis of its records: percentiles,
//! means, spreads, Student-t and Welch intervals, Pareto fronts. Plain functions of numbers; this
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

/// 95 % two-sided confidence interval of the mean (Student t); needs two values or more.
pub fn mean_ci95(values: &[f64]) -> Option<(f64, f64)> {
    if values.len() < 2 {
        return None;
    }
    let half = t95(values.len() - 1) * std_dev(values) / (values.len() as f64).sqrt();
    let m = mean(values);
    Some((m - half, m + half))
}

/// Two-sided 95 % quantile of Student's t with `df` degrees of freedom.
pub fn t95(df: usize) -> f64 {
    const TABLE: [f64; 30] = [
        12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
        2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
        2.052, 2.048, 2.045, 2.042,
    ];
    match df {
        0 => f64::NAN,
        1..=30 => TABLE[df - 1],
        31..=60 => 2.000,
        61..=120 => 1.980,
        _ => 1.960,
    }
}

/// 1 - mean(candidate) / mean(baseline) in %, with a 95 % interval: the delta method on the log
/// of the ratio of two independent means (relative standard errors added in quadrature) with
/// Welch-Satterthwaite degrees of freedom. Needs two values or more on each side for the interval.
pub fn saving_pct(candidate: &[f64], baseline: &[f64]) -> Option<(f64, Option<(f64, f64)>)> {
    if candidate.is_empty() || baseline.is_empty() {
        return None;
    }
    let (mc, mb) = (mean(candidate), mean(baseline));
    if mc <= 0.0 || mb <= 0.0 {
        return None;
    }
    let ratio = mc / mb;
    let point = (1.0 - ratio) * 100.0;
    if candidate.len() < 2 || baseline.len() < 2 {
        return Some((point, None));
    }
    // Squared relative standard errors of the two means.
    let rel_var = |v: &[f64], m: f64| std_dev(v).powi(2) / v.len() as f64 / (m * m);
    let (vc, vb) = (rel_var(candidate, mc), rel_var(baseline, mb));
    let se = (vc + vb).sqrt();
    let df = if se == 0.0 {
        usize::MAX
    } else {
        let welch = (vc + vb).powi(2)
            / (vc * vc / (candidate.len() - 1) as f64 + vb * vb / (baseline.len() - 1) as f64);
        welch.floor().max(1.0) as usize
    };
    let half = t95(df) * se;
    let (lo, hi) = (ratio * (-half).exp(), ratio * half.exp());
    Some((point, Some(((1.0 - hi) * 100.0, (1.0 - lo) * 100.0))))
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
    fn savings_are_against_the_baseline_mean_with_a_welch_interval() {
        // Candidate 80 +- 1 over 3 windows, baseline 100 +- 2 over 3 windows: 20 % saving.
        let (point, ci) = saving_pct(&[79.0, 80.0, 81.0], &[98.0, 100.0, 102.0]).unwrap();
        assert!((point - 20.0).abs() < 1e-9, "{point}");
        let (lo, hi) = ci.unwrap();
        // Relative variances: (1/3)/80^2 = 5.208e-5 and (4/3)/100^2 = 1.333e-4; se = 0.013614;
        // Welch df = floor(3.43e-8 / (1.356e-9 + 8.889e-9)) = 3, t = 3.182, half = 0.04332.
        let ratio = 0.8f64;
        assert!(
            (lo - (1.0 - ratio * 0.04332f64.exp()) * 100.0).abs() < 0.01,
            "{lo}"
        );
        assert!(
            (hi - (1.0 - ratio * (-0.04332f64).exp()) * 100.0).abs() < 0.01,
            "{hi}"
        );
        assert!(lo < point && point < hi);
        // One window: a point, no interval; nothing measured: nothing.
        assert_eq!(saving_pct(&[50.0], &[100.0]), Some((50.0, None)));
        assert_eq!(saving_pct(&[], &[100.0]), None);
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
    fn ci_uses_student_t_over_repeats() {
        // mean 10, sd 1, n 3: half width = 4.303 * 1 / sqrt(3) = 2.4843
        let (lo, hi) = mean_ci95(&[9.0, 10.0, 11.0]).unwrap();
        assert!((lo - 7.5157).abs() < 1e-3, "{lo}");
        assert!((hi - 12.4843).abs() < 1e-3, "{hi}");
        assert!(mean_ci95(&[5.0]).is_none());
    }

    #[test]
    fn coefficient_of_variation_is_sd_over_mean() {
        let cv = coefficient_of_variation(&[9.0, 10.0, 11.0]).unwrap();
        assert!((cv - 0.1).abs() < 1e-12);
    }
}
