//! Short flag codes for the results table (so it fits 1280 px), with a legend under the table
//! and each flagged cell's full sentences beside it.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::analysis::CellSummary;

/// (code, what it means, how the analysis words its flag: the start of its sentence). Every
/// flag the analysis writes has a code here (a test checks it); "?" is for flags a newer
/// analysis or an edited template adds.
const CODES: [(&str, &str, &str); 14] = [
    (
        "N",
        "noisy: the per-window median latencies vary by more than 5 % (window CV)",
        "noisy",
    ),
    (
        "O",
        "a window disagrees with the others by more than 10 % (latency, energy or trace vs counter): one bad window, named with its numbers",
        "window ",
    ),
    (
        "T",
        "the sampled power trace and the energy counter disagree by more than 10 % in a window",
        "power trace",
    ),
    (
        "C",
        "coarse counter: trace and counter differ by 5-10 % in a window of fewer than 20 counter updates, where one update is a large part of the window",
        "coarse counter",
    ),
    (
        "P",
        "the GPU held its clocks back (power cap, thermal or other NVML throttle reasons) during a window",
        "throttled",
    ),
    (
        "P",
        "the GPU held its clocks back (power cap, thermal or other NVML throttle reasons) during a window",
        "at the power cap",
    ),
    ("W", "warm-up ended before latency was steady", "warm-up"),
    (
        "I",
        "too few windows for a 95 % interval (a median needs 6)",
        "",
    ),
    (
        "S",
        "not a speed figure: W8A8 on the CPU runs the numerics reference, so its time is not ranked or charted",
        "numerics reference",
    ),
    (
        "R",
        "the layers' sum does not reconcile with the whole-model cell within 3 %",
        "layers'",
    ),
    (
        "R",
        "the layers' sum does not reconcile with the whole-model cell within 3 %",
        "prefix-differenced",
    ),
    (
        "M",
        "the two per-layer methods (isolated, prefix) disagree beyond their intervals",
        "isolated and prefix",
    ),
    (
        "D",
        "a negative prefix difference: a layer whose prefix measured less than the one before",
        "negative prefix",
    ),
    (
        "?",
        "a flag without a code of its own (from a newer analysis): its sentence is in the list below",
        "",
    ),
];

fn code_of(flag: &str) -> &'static str {
    if flag.contains("only: no interval") {
        return "I";
    }
    if flag.starts_with("window ") && flag.contains("disagrees") {
        return "O";
    }
    CODES
        .iter()
        .find(|(_, _, prefix)| {
            !prefix.is_empty() && *prefix != "window " && flag.starts_with(prefix)
        })
        .map_or("?", |c| c.0)
}

#[derive(Debug, Serialize)]
pub(super) struct FlagLegend {
    code: &'static str,
    meaning: &'static str,
}

#[derive(Debug, Serialize)]
pub(super) struct CellFlags {
    id: String,
    label: String,
    messages: Vec<String>,
}

#[derive(Debug, Serialize)]
pub(super) struct FlagView {
    /// Cell id -> its codes, e.g. `N O`.
    pub(super) codes: BTreeMap<String, String>,
    /// The codes that occur, in legend order.
    pub(super) legend: Vec<FlagLegend>,
    pub(super) cells: Vec<CellFlags>,
}

pub(super) fn flag_view(cells: &[CellSummary]) -> FlagView {
    let mut codes = BTreeMap::new();
    let mut used = Vec::new();
    let mut flagged = Vec::new();
    for c in cells.iter().filter(|c| !c.flags.is_empty()) {
        let mut mine: Vec<&str> = Vec::new();
        for code in c.flags.iter().map(|f| code_of(f)) {
            if !mine.contains(&code) {
                mine.push(code);
            }
        }
        for code in &mine {
            if !used.contains(code) {
                used.push(*code);
            }
        }
        codes.insert(c.id.clone(), mine.join(" "));
        flagged.push(CellFlags {
            id: c.id.clone(),
            label: c.label.clone(),
            messages: c.flags.clone(),
        });
    }
    FlagView {
        codes,
        legend: CODES
            .iter()
            .enumerate()
            // A code listed twice (two wordings) is explained once.
            .filter(|(i, c)| used.contains(&c.0) && !CODES[..*i].iter().any(|d| d.0 == c.0))
            .map(|(_, c)| FlagLegend {
                code: c.0,
                meaning: c.1,
            })
            .collect(),
        cells: flagged,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_flag_the_analysis_writes_has_its_code() {
        for (flag, code) in [
            ("noisy: per-window median latencies vary by 7.1 % (> 5 %)", "N"),
            ("window 2 of 3 disagrees: latency 11.640 ms/batch against 7.330 to 7.380 in the others (+57.7 %)", "O"),
            ("power trace and energy counter disagree by -22.7 % (window 2 of 3, the worst)", "T"),
            ("warm-up ended before latency was steady", "W"),
            ("warm-up ended before latency was steady in 2 layer(s)", "W"),
            ("3 window(s) only: no interval (a 95 % interval of the median needs 6 windows: [min, max] of 3 covers 75.0 %)", "I"),
            ("layers' latency sum is 93.0 % of the whole model's (cell abc)", "R"),
            ("prefix-differenced energy sum is 93.0 % of the whole model's (cell abc)", "R"),
            ("isolated and prefix-differenced energy disagree beyond their intervals in classifier: ...", "M"),
            ("negative prefix difference: classifier -0.0914 mJ ...", "D"),
            ("coarse counter: trace vs counter -7.0 % in window 3, ...", "C"),
            ("numerics reference: W8A8 arithmetic in f32 on the CPU, ...", "S"),
            ("throttled: sw_power_cap in window(s) 2, 3 of 6", "P"),
            ("at the power cap: 699.0 W average against the 700 W limit", "P"),
            ("something new", "?"),
        ] {
            assert_eq!(code_of(flag), code, "{flag}");
        }
    }
}
