//! `runner compare`: whether a cell measured in both runs ran the same code. A cell's id hashes
//! what the user asked for (model, shapes, precision, settings), not which kernels, calibration
//! rule or graph the binary chose, so two runs of one id on two commits may have run differently
//! (a kernel promoted, a step rule changed). The records' `implementation` says what ran; where
//! A's and B's differ, the comparison says so beside the ratios, which then hold that change.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::results::CellRecord;

/// One `implementation` key whose text differs between A's and B's record of a cell.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub(super) struct KeyDifference {
    pub key: String,
    /// The text in each run; `None` where that run's record has no such key.
    pub a: Option<String>,
    pub b: Option<String>,
    /// The same words with other numbers (measured candidate times, graph node counts,
    /// calibration counts): said apart from a change of kernel, rule or mode.
    pub numbers_only: bool,
    /// Whether the report prints both texts: always for other words; for other numbers only
    /// when short (a node count), not the timed tactics' paragraphs, which differ every run.
    pub show_texts: bool,
}

/// The longest text whose numbers-only difference the report still prints in full.
const SHORT_TEXT: usize = 160;

/// A cell measured in both runs whose records say different things ran.
#[derive(Debug, Clone, Serialize)]
pub(super) struct RanDifferently {
    pub id: String,
    pub label: String,
    pub keys: Vec<KeyDifference>,
    /// The keys whose words differ (not only their numbers), for the one-line summary.
    pub changed: Vec<String>,
}

/// The keys whose text differs between two records' `implementation` (a key in one only
/// counts), in key order; empty when both say the same or neither says anything.
fn implementation_differences(a: &CellRecord, b: &CellRecord) -> Vec<KeyDifference> {
    let empty = BTreeMap::new();
    let ia = a.implementation.as_ref().unwrap_or(&empty);
    let ib = b.implementation.as_ref().unwrap_or(&empty);
    let keys: BTreeSet<&String> = ia.keys().chain(ib.keys()).collect();
    keys.into_iter()
        .map(|key| (key, ia.get(key), ib.get(key)))
        // Most keys say the same in both: only the others are read for their words.
        .filter(|(_, ta, tb)| ta != tb)
        .map(|(key, ta, tb)| {
            let numbers_only = matches!((ta, tb), (Some(x), Some(y)) if words(x) == words(y));
            let longest = ta.into_iter().chain(tb).map(|t| t.len()).max().unwrap_or(0);
            KeyDifference {
                key: key.clone(),
                numbers_only,
                show_texts: !numbers_only || longest <= SHORT_TEXT,
                a: ta.cloned(),
                b: tb.cloned(),
            }
        })
        .collect()
}

/// The pair as a [`RanDifferently`] when their implementations differ.
pub(super) fn ran_differently(
    a: &CellRecord,
    b: &CellRecord,
    label: &str,
) -> Option<RanDifferently> {
    let keys = implementation_differences(a, b);
    if keys.is_empty() {
        return None;
    }
    let changed = keys
        .iter()
        .filter(|k| !k.numbers_only)
        .map(|k| k.key.clone())
        .collect();
    Some(RanDifferently {
        id: a.cell.id.clone(),
        label: label.to_string(),
        keys,
        changed,
    })
}

/// The line `runner compare` prints when some cell ran other code in A and B, naming the keys.
pub(super) fn summary_line(cells: &[RanDifferently]) -> Option<String> {
    let changed: Vec<&RanDifferently> = cells.iter().filter(|r| !r.changed.is_empty()).collect();
    let keys: BTreeSet<&str> = changed
        .iter()
        .flat_map(|r| r.changed.iter().map(String::as_str))
        .collect();
    (!keys.is_empty()).then(|| {
        format!(
            "{} cell(s) ran other code in A and B (their records' implementation differs in {}; compare.md shows both texts): their ratios hold that change as well as the noise",
            changed.len(),
            keys.into_iter().collect::<Vec<_>>().join(", ")
        )
    })
}

/// `text` with every number (digits, with a decimal part and an exponent) as `#`: what is left
/// names the kernels, rules and modes.
fn words(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if !c.is_ascii_digit() {
            out.push(c);
            continue;
        }
        let mut previous = c;
        while let Some(&next) = chars.peek() {
            let continues = next.is_ascii_digit()
                || (next == '.' && previous.is_ascii_digit())
                || (matches!(next, 'e' | 'E') && previous.is_ascii_digit())
                || (matches!(next, '-' | '+') && matches!(previous, 'e' | 'E'));
            if !continues {
                break;
            }
            previous = next;
            chars.next();
        }
        // "3." at a sentence's end keeps its full stop.
        if previous == '.' {
            out.push('#');
            out.push('.');
        } else {
            out.push('#');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_masked_and_words_kept() {
        assert_eq!(words("2779 graph nodes"), "# graph nodes");
        assert_eq!(words("pp128rows 39.3 us, 1.5e-3 s."), "pp#rows # us, # s.");
        assert_eq!(words("step 3."), "step #.");
        assert_eq!(words("no numbers"), "no numbers");
        assert_ne!(words("per-column"), words("per-tensor"));
    }

    fn record(implementation: &[(&str, &str)]) -> CellRecord {
        let mut r = crate::analysis::tests::record_with_energy(vec![(1.0, 10, 1.0, 1.0)], None);
        r.implementation = (!implementation.is_empty()).then(|| {
            implementation
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        });
        r
    }

    #[test]
    fn a_changed_rule_a_changed_count_and_a_missing_key_are_told_apart() {
        let a = record(&[
            ("ffn_activation_scales", "static per-column steps, 12 FFNs"),
            ("execution", "cuda-graph (2779 graph nodes)"),
            ("linear", "bf16 matmul"),
            ("gemm_tactics", "timed"),
        ]);
        let b = record(&[
            (
                "ffn_activation_scales",
                "one static step for the whole tensor, 12 FFNs",
            ),
            ("execution", "cuda-graph (2801 graph nodes)"),
            ("linear", "bf16 matmul"),
        ]);
        let d = implementation_differences(&a, &b);
        let keys: Vec<&str> = d.iter().map(|k| k.key.as_str()).collect();
        assert_eq!(keys, ["execution", "ffn_activation_scales", "gemm_tactics"]);
        assert!(d[0].numbers_only && d[0].show_texts);
        assert!(!d[1].numbers_only && d[1].show_texts);
        assert_eq!(d[2].b, None);
        assert!(!d[2].numbers_only);
        let r = ran_differently(&a, &b, "label").unwrap();
        assert_eq!(r.changed, ["ffn_activation_scales", "gemm_tactics"]);
        assert!(ran_differently(&a, &a, "label").is_none());
        let line = summary_line(&[r.clone(), r]).unwrap();
        assert!(
            line.starts_with("2 cell(s) ran other code")
                && line.contains("in ffn_activation_scales, gemm_tactics;"),
            "{line}"
        );
        // Only numbers moved (measured times, counts): no line.
        let numbers = ran_differently(
            &a,
            &record(&[
                ("ffn_activation_scales", "static per-column steps, 13 FFNs"),
                ("execution", "cuda-graph (2779 graph nodes)"),
                ("linear", "bf16 matmul"),
                ("gemm_tactics", "timed"),
            ]),
            "l",
        )
        .unwrap();
        assert!(numbers.changed.is_empty());
        // A long text whose numbers alone moved (the timed tactics) is named, not printed.
        let timed = |us: &str| record(&[("gemm_tactics", &format!("{} {us} us", "x".repeat(200)))]);
        let d = implementation_differences(&timed("41.9"), &timed("42.1"));
        assert!(d[0].numbers_only && !d[0].show_texts);
        assert_eq!(summary_line(&[numbers]), None);
        // Records that say nothing (older ones, the CPU's plain cells) ran nothing different.
        assert!(ran_differently(&record(&[]), &record(&[]), "l").is_none());
    }
}
