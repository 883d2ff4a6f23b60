//! `runner compare`'s verdict on one metric of one cell (or unit), as criterion judges a change:
//! a metric **improved** or **regressed** only when both hold: the 95 % interval of B/A excludes 1
//! (the difference is beyond this pair of runs' within-run noise) and the change exceeds the
//! noise threshold (run-to-run noise: two back-to-back runs of one H200 cell differ by ~3 %
//! against within-run intervals of +-0.3 %, so an interval alone calls every such pair
//! "different"). Anything else is **within noise**, with the reason said. Also the relative
//! figure hyperfine prints: "1.23 ± 0.04 times faster".

use serde::Serialize;

use crate::stats::{Estimate, MIN_FOR_RATIO_INTERVAL};

/// The noise threshold when none is given, in %: above what two back-to-back runs of one H200
/// cell differ by (up to 2.0 % in docs/results/2026-12-02-nvidia-h200-w8a8-attention/, run-1
/// against run-2; about 3 % in issue 28's review), so that a pair of runs of unchanged code is
/// within noise, and a 5 % regression is not.
pub const DEFAULT_NOISE_THRESHOLD_PCT: f64 = 5.0;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum Verdict {
    WithinNoise,
    Improved,
    Regressed,
    /// A cell whose windows vary, within a run, by more than the noise threshold: no
    /// improvement or sameness is claimed for it (a regression still is: see [`Verdict::cell`]).
    Unsteady,
}

impl Verdict {
    pub fn word(self) -> &'static str {
        match self {
            Self::WithinNoise => "within noise",
            Self::Improved => "improved",
            Self::Regressed => "regressed",
            Self::Unsteady => "not judged",
        }
    }

    /// A whole cell's verdict: its metrics', except that on unsteady windows (a run's window CV
    /// above the noise threshold) nothing but a regression is said. Such a machine's run-to-run
    /// noise is not bounded by the threshold, so "improved" or "within noise" would be claims
    /// the data cannot carry; a regression is kept, so that a gate fails rather than passes on
    /// a noisy machine, and is said to be on unsteady windows.
    pub fn cell(metrics: &[MetricView], unsteady: bool) -> Self {
        match Self::of(metrics) {
            Self::Regressed => Self::Regressed,
            _ if unsteady => Self::Unsteady,
            v => v,
        }
    }

    /// A cell's (or unit's) verdict from its metrics': regressed if any regressed (the gate),
    /// else improved if any improved.
    pub fn of(metrics: &[MetricView]) -> Self {
        if metrics.iter().any(|m| m.verdict == Self::Regressed) {
            Self::Regressed
        } else if metrics.iter().any(|m| m.verdict == Self::Improved) {
            Self::Improved
        } else {
            Self::WithinNoise
        }
    }
}

#[derive(Debug, Serialize)]
pub(super) struct MetricView {
    /// `latency` or `energy`.
    pub metric: String,
    /// B/A.
    pub ratio: f64,
    pub ci_low: Option<f64>,
    pub ci_high: Option<f64>,
    /// `1.004 [0.998, 1.011]` (`1.004` without an interval).
    pub text: String,
    /// B/A - 1 in %: `+0.4 %`.
    pub change: String,
    /// Both runs had enough windows for an interval (4 a side).
    pub has_interval: bool,
    /// As hyperfine says it: `1.23 ± 0.04 times faster`.
    pub relative: String,
    /// The interval excludes 1 (with no interval: the point is off 1 by the threshold): B and A
    /// differ beyond this pair's within-run noise, which is not yet beyond run-to-run noise.
    pub differs: bool,
    pub verdict: Verdict,
    /// Why the verdict: the change in % against the interval and the threshold.
    pub why: String,
    /// Worse in B beyond the interval and the threshold (the gate: exit 1).
    pub regressed: bool,
    pub improved: bool,
}

/// B/A with its interval, to three decimals near 1 (where a threshold of a few % is judged).
fn ratio_text(e: &Estimate) -> String {
    let d = if (0.5..2.0).contains(&e.0) { 3 } else { 2 };
    match e.1 {
        Some((lo, hi)) => format!("{:.d$} [{lo:.d$}, {hi:.d$}]", e.0),
        // Said once for the comparison (CompareView::without_interval), not in every cell.
        None => format!("{:.d$}", e.0),
    }
}

/// `f ± e times {better}` when B is better (f = A/B for a cost), else `f ± e times {worse}`;
/// e is the larger half of the 95 % interval of f (hyperfine's ± is a standard deviation; an
/// interval says more about few windows, and is what the verdict uses).
pub(super) fn relative(e: &Estimate, higher_is_worse: bool, better: &str, worse: &str) -> String {
    let (r, ci) = *e;
    // The factor B is better or worse by, and its interval.
    let b_better = if higher_is_worse { r <= 1.0 } else { r >= 1.0 };
    let flip = b_better == higher_is_worse;
    let (f, ci) = if flip {
        (1.0 / r, ci.map(|(lo, hi)| (1.0 / hi, 1.0 / lo)))
    } else {
        (r, ci)
    };
    let word = if b_better { better } else { worse };
    match ci {
        Some((lo, hi)) => {
            let (below, above) = ((f - lo).max(0.0), (hi - f).max(0.0));
            let pm = below.max(above);
            // A lopsided interval (few, scattered windows) is no "±": it is given whole.
            if pm > 2.0 * below.min(above) && pm > 0.05 * f {
                return format!("{f:.2} times {word} [{lo:.2}, {hi:.2}]");
            }
            let d = if pm < 0.01 { 3 } else { 2 };
            format!("{f:.d$} ± {pm:.d$} times {word}")
        }
        None => format!("{f:.2} times {word}"),
    }
}

/// A metric's verdict; `None` for an estimate that is not a finite positive ratio (records are
/// checked as they are read, so this is a backstop: "NaNx, within noise" is never a verdict).
pub(super) fn metric(
    name: &str,
    e: Estimate,
    threshold: f64,
    higher_is_worse: bool,
) -> Option<MetricView> {
    let finite = e.0.is_finite() && e.1.is_none_or(|(lo, hi)| lo.is_finite() && hi.is_finite());
    if !finite || e.0 <= 0.0 {
        return None;
    }
    let limit = 1.0 + threshold / 100.0;
    let (up, down) = (e.0 > limit, e.0 < 1.0 / limit);
    // Beyond the interval, upwards or downwards; with no interval, the point alone.
    let (beyond_up, beyond_down) = match e.1 {
        Some((lo, hi)) => (lo > 1.0, hi < 1.0),
        None => (up, down),
    };
    let (worse, better) = if higher_is_worse {
        (beyond_up && up, beyond_down && down)
    } else {
        (beyond_down && down, beyond_up && up)
    };
    let verdict = if worse {
        Verdict::Regressed
    } else if better {
        Verdict::Improved
    } else {
        Verdict::WithinNoise
    };
    let change = format!("{:+.1} %", (e.0 - 1.0) * 100.0);
    let why = match (verdict, e.1.is_some()) {
        (Verdict::WithinNoise, true) if !(beyond_up || beyond_down) => {
            format!("{change}: the 95 % interval holds 1")
        }
        (Verdict::WithinNoise, true) => format!(
            "{change}: beyond this pair's within-run interval, but under the {threshold} % noise threshold"
        ),
        (Verdict::WithinNoise, false) => format!(
            "{change}: under the {threshold} % noise threshold (no interval: fewer than {MIN_FOR_RATIO_INTERVAL} windows a side)"
        ),
        (_, true) => format!("{change}: beyond the 95 % interval and the {threshold} % noise threshold"),
        (_, false) => format!(
            "{change}: beyond the {threshold} % noise threshold (no interval: fewer than {MIN_FOR_RATIO_INTERVAL} windows a side, the point alone)"
        ),
    };
    let (better_word, worse_word) = match name {
        "latency" => ("faster", "slower"),
        "energy" => ("less energy", "more energy"),
        _ => ("better", "worse"),
    };
    Some(MetricView {
        metric: name.to_string(),
        ratio: e.0,
        ci_low: e.1.map(|c| c.0),
        ci_high: e.1.map(|c| c.1),
        text: ratio_text(&e),
        change: change.clone(),
        has_interval: e.1.is_some(),
        relative: relative(&e, higher_is_worse, better_word, worse_word),
        differs: beyond_up || beyond_down,
        regressed: verdict == Verdict::Regressed,
        improved: verdict == Verdict::Improved,
        verdict,
        why,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(r: f64, ci: Option<(f64, f64)>, higher_is_worse: bool) -> MetricView {
        metric("latency", (r, ci), 5.0, higher_is_worse).unwrap()
    }

    #[test]
    fn beyond_the_interval_but_under_the_threshold_is_within_noise() {
        // Two back-to-back runs: 3 % apart with +-0.3 % intervals.
        let m = v(1.03, Some((1.027, 1.033)), true);
        assert_eq!(m.verdict, Verdict::WithinNoise);
        assert!(m.differs && !m.regressed);
        assert!(
            m.why.contains(
                "+3.0 %: beyond this pair's within-run interval, but under the 5 % noise threshold"
            ),
            "{}",
            m.why
        );
        let m = v(1.001, Some((0.99, 1.01)), true);
        assert_eq!(m.verdict, Verdict::WithinNoise);
        assert!(!m.differs && m.why.contains("holds 1"), "{}", m.why);
    }

    #[test]
    fn improved_and_regressed_need_the_interval_and_the_threshold() {
        let m = v(1.20, Some((1.15, 1.25)), true);
        assert_eq!(m.verdict, Verdict::Regressed);
        assert!(m.regressed && !m.improved);
        // 5.1x faster: improved, not "differs".
        let m = v(1.0 / 5.1, Some((0.19, 0.2)), true);
        assert_eq!(m.verdict, Verdict::Improved);
        assert_eq!(m.relative, "5.10 ± 0.16 times faster");
        // Far off 1, but the interval holds 1 (noisy windows): within noise.
        assert_eq!(v(1.3, Some((0.9, 1.8)), true).verdict, Verdict::WithinNoise);
        // A metric where higher is better: lower in B regressed.
        assert_eq!(
            v(0.8, Some((0.75, 0.85)), false).verdict,
            Verdict::Regressed
        );
        // No interval: the point against the threshold.
        let m = v(2.0, None, true);
        assert_eq!(m.verdict, Verdict::Regressed);
        assert!(m.why.contains("the point alone"), "{}", m.why);
        assert_eq!(m.relative, "2.00 times slower");
        assert_eq!(m.text, "2.00");
        assert!(!m.has_interval);
        // Not a ratio: no verdict.
        assert!(metric("latency", (f64::NAN, None), 5.0, true).is_none());
        assert!(metric("latency", (0.0, None), 5.0, true).is_none());
    }

    #[test]
    fn relative_figures_read_as_hyperfine_prints_them() {
        let e = (1.0 / 1.23, Some((1.0 / 1.27, 1.0 / 1.20)));
        assert_eq!(
            relative(&e, true, "faster", "slower"),
            "1.23 ± 0.04 times faster"
        );
        let e = (1.10, Some((1.08, 1.11)));
        assert_eq!(
            relative(&e, true, "less energy", "more energy"),
            "1.10 ± 0.02 times more energy"
        );
        // Lopsided: the interval, not a ±.
        let e = (1.378, Some((1.083, 55.071)));
        assert_eq!(
            relative(&e, true, "faster", "slower"),
            "1.38 times slower [1.08, 55.07]"
        );
        let e = (1.0, Some((0.999, 1.002)));
        assert_eq!(
            relative(&e, true, "faster", "slower"),
            "1.000 ± 0.002 times faster"
        );
    }

    #[test]
    fn a_cell_is_regressed_if_any_metric_is_else_improved_if_any_is() {
        let up = v(1.2, Some((1.15, 1.25)), true);
        let down = v(0.8, Some((0.75, 0.85)), true);
        let same = v(1.0, Some((0.99, 1.01)), true);
        assert_eq!(Verdict::of(&[down, up]), Verdict::Regressed);
        let down = v(0.8, Some((0.75, 0.85)), true);
        assert_eq!(Verdict::of(&[same, down]), Verdict::Improved);
        assert_eq!(Verdict::of(&[]), Verdict::WithinNoise);
    }

    #[test]
    fn on_unsteady_windows_only_a_regression_is_said() {
        let up = || v(1.2, Some((1.15, 1.25)), true);
        let down = || v(0.8, Some((0.75, 0.85)), true);
        let same = || v(1.0, Some((0.99, 1.01)), true);
        assert_eq!(Verdict::cell(&[up()], true), Verdict::Regressed);
        assert_eq!(Verdict::cell(&[down()], true), Verdict::Unsteady);
        assert_eq!(Verdict::cell(&[same()], true), Verdict::Unsteady);
        assert_eq!(Verdict::cell(&[down()], false), Verdict::Improved);
        assert_eq!(Verdict::cell(&[same()], false), Verdict::WithinNoise);
    }
}
