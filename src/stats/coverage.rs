//! Coverage by simulation: windows drawn many times from distributions whose median (or ratio)
//! is known; the share of intervals holding the true value must be the coverage the method
//! claims (exact binomial / Mann–Whitney), at least 95 %. The same harness measures the old
//! bootstrap of three windows at ~75 %, so a method with the wrong coverage cannot pass.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Exp, LogNormal, Normal};

use super::{median_ci95, median_coverage, ratio_ci95, ratio_coverage};

const TRIALS: usize = 20_000;

/// Three binomial standard errors of a proportion near 0.96 over [`TRIALS`] trials, plus a
/// little: a method off by two points fails, chance alone (p < 0.003) does not.
const TOLERANCE: f64 = 0.005;

fn share(trials: usize, mut covered: impl FnMut() -> bool) -> f64 {
    (0..trials).filter(|_| covered()).count() as f64 / trials as f64
}

/// Distributions of window values with their true medians: symmetric, skewed, heavy-tailed.
/// (name, a draw, the true median; NaN: computed from a large sample).
type Named = (&'static str, Box<dyn Fn(&mut ChaCha8Rng) -> f64>, f64);

fn distributions() -> Vec<Named> {
    let normal = Normal::new(10.0, 0.2).unwrap();
    let lognormal = LogNormal::new(0.0, 0.5).unwrap();
    let exp = Exp::new(2.0).unwrap();
    vec![
        ("normal", Box::new(move |r| normal.sample(r)), 10.0),
        ("lognormal", Box::new(move |r| lognormal.sample(r)), 1.0),
        (
            "exponential",
            Box::new(move |r| exp.sample(r)),
            2f64.ln() / 2.0,
        ),
        // Mostly steady windows, now and then a slow one (a window that caught a clock drop).
        (
            "contaminated",
            Box::new(move |r| {
                let z = (normal.sample(r) - 10.0) / 0.2;
                let base = 1.0 + 0.01 * z;
                if r.random::<f64>() < 0.1 {
                    base * 1.3
                } else {
                    base
                }
            }),
            f64::NAN, // computed below
        ),
    ]
}

#[test]
fn the_median_interval_covers_what_it_claims_for_any_window_distribution() {
    let mut rng = ChaCha8Rng::seed_from_u64(28);
    for (name, draw, median) in distributions() {
        let median = if median.is_nan() {
            // The contaminated mixture's median, from a large sample.
            let mut big: Vec<f64> = (0..200_001).map(|_| draw(&mut rng)).collect();
            big.sort_by(f64::total_cmp);
            big[100_000]
        } else {
            median
        };
        for n in [6usize, 10, 25] {
            let claimed = median_coverage(n).unwrap();
            let got = share(TRIALS, || {
                let v: Vec<f64> = (0..n).map(|_| draw(&mut rng)).collect();
                let (lo, hi) = median_ci95(&v).unwrap().1.unwrap();
                lo <= median && median <= hi
            });
            eprintln!("median, {name}, {n} windows: covered {got:.4}, claimed {claimed:.4}");
            assert!(
                (got - claimed).abs() < TOLERANCE && got >= 0.95 - TOLERANCE,
                "{name}, {n} windows: covered {got:.4}, claimed {claimed:.4}"
            );
        }
    }
}

#[test]
fn the_harness_catches_an_interval_that_is_not_95_percent() {
    // What the reports used before: the bootstrap interval of the median of three windows,
    // which is [min, max] of three: 1 - 2/8 = 75 %.
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let normal = Normal::new(0.0, 1.0).unwrap();
    let got = share(TRIALS, || {
        let v: Vec<f64> = (0..3).map(|_| normal.sample(&mut rng)).collect();
        let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        lo <= 0.0 && 0.0 <= hi
    });
    assert!((got - 0.75).abs() < 0.01, "{got}");
    assert!(got < 0.95 - TOLERANCE, "would fail the coverage test");
    // And the methods refuse to give an interval where they could not reach 95 %.
    assert_eq!(median_ci95(&[1.0, 2.0, 3.0, 4.0, 5.0]).unwrap().1, None);
    assert_eq!(
        ratio_ci95(&[1.0, 2.0, 3.0], &[1.0, 2.0, 3.0]).unwrap().1,
        None
    );
}

#[test]
fn the_ratio_interval_covers_the_true_ratio() {
    let mut rng = ChaCha8Rng::seed_from_u64(29);
    // Windows of two cells: lognormal spreads of 1 % and 20 %, the second 0.76x the first.
    for (sigma, ratio) in [(0.01, 0.76), (0.2, 1.0), (0.05, 5.1)] {
        let a = LogNormal::new(3.0, sigma).unwrap();
        let b = LogNormal::new(3.0 + f64::ln(ratio), sigma).unwrap();
        for (m, n) in [(6usize, 6usize), (4, 4), (6, 10)] {
            let claimed = ratio_coverage(n, m).unwrap();
            let got = share(TRIALS, || {
                let va: Vec<f64> = (0..m).map(|_| a.sample(&mut rng)).collect();
                let vb: Vec<f64> = (0..n).map(|_| b.sample(&mut rng)).collect();
                let (lo, hi) = ratio_ci95(&vb, &va).unwrap().1.unwrap();
                lo <= ratio && ratio <= hi
            });
            eprintln!("ratio {ratio}, sigma {sigma}, {m} and {n} windows: covered {got:.4}, claimed {claimed:.4}");
            assert!(
                (got - claimed).abs() < TOLERANCE && got >= 0.95 - TOLERANCE,
                "sigma {sigma}, ratio {ratio}, {m} and {n} windows: covered {got:.4}, claimed {claimed:.4}"
            );
        }
    }
}
