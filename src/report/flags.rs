//! Short flag codes for the results table (so it fits 1280 px), with a legend under the table
//! and each flagged cell's full sentences beside it.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::analysis::CellSummary;

/// (code, what it means, how the analysis words its flag).
const CODES: [(&str, &str, &str); 7] = [
    (
        "N",
        "noisy: the per-window median latencies vary by more than 5 %",
        "noisy",
    ),
    (
        "O",
        "a window disagrees with the others (latency, energy or trace vs counter)",
        "window ",
    ),
    (
        "T",
        "the power trace and the energy counter disagree by more than 10 %",
        "power trace",
    ),
    ("W", "warm-up ended before latency was steady", "warm-up"),
    ("I", "too few windows for an interval (3 are needed)", ""),
    (
        "R",
        "the layers' sum does not reconcile with the whole model",
        "layers'",
    ),
    ("?", "another flag (see the cell's sentences)", ""),
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
        let mut mine: Vec<&str> = c.flags.iter().map(|f| code_of(f)).collect();
        mine.dedup();
        for code in &mine {
            if !used.contains(code) {
                used.push(*code);
            }
        }
        codes.insert(c.id.clone(), mine.join(" "));
        flagged.push(CellFlags {
            id: c.id.clone(),
            label: format!(
                "{} {} b{} seq {}",
                c.model, c.precision, c.batch_size, c.seq_len
            ),
            messages: c.flags.clone(),
        });
    }
    FlagView {
        codes,
        legend: CODES
            .iter()
            .filter(|c| used.contains(&c.0))
            .map(|c| FlagLegend {
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
            ("2 window(s) only: no interval (a 95 % interval needs 3 windows or more)", "I"),
            ("layers' latency sum is 93.0 % of the whole model's (cell abc)", "R"),
            ("something new", "?"),
        ] {
            assert_eq!(code_of(flag), code, "{flag}");
        }
    }
}
