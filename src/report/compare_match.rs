//! `runner compare`: which cells of two runs are the same measurement, and for every other cell
//! what is true of it (planned in one run only, planned in both but recorded in one, skipped or
//! failed, a `top:K` selection that quantized other layers), so the comparison never says less
//! than it knows, and a gate can tell "nothing compared" from "nothing regressed".

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::matrix::{execution_identity, Cell};
use crate::results::{CellRecord, CellStatus, Manifest};

/// A cell of either plan that was not compared, and why.
#[derive(Debug, Clone, Serialize)]
pub(super) struct NotCompared {
    pub id: String,
    pub label: String,
    /// `A`, `B` or `both`: where the cell stands.
    pub side: &'static str,
    pub why: String,
}

/// Cells measured in both runs (same id, same layers quantized), and every other cell of
/// either plan with what is true of it.
pub(super) struct Pairing<'a> {
    pub both: Vec<(&'a CellRecord, &'a CellRecord)>,
    pub not_compared: Vec<NotCompared>,
    /// Cells both plans hold.
    pub shared: usize,
}

/// Every axis's value (`tiny int8-fp32 b2 seq 8 layers quantize=all method=isolated`): the
/// definition the id hashes, in words, with any axis added later.
pub(super) fn cell_label(c: &Cell) -> String {
    crate::analysis::description(c)
}

fn status_word(s: CellStatus) -> &'static str {
    match s {
        CellStatus::Ok => "measured",
        CellStatus::Skipped => "skipped",
        CellStatus::Failed => "failed",
    }
}

fn reason(r: &CellRecord) -> String {
    r.reason
        .as_deref()
        .map(|why| format!(" ({})", why.lines().next().unwrap_or("").trim()))
        .unwrap_or_default()
}

/// The layers a `top:K` cell quantized, where the selection depends on a measured profile (so
/// two runs' cells of one id may differ).
fn profile_aimed(r: &CellRecord) -> Option<&[String]> {
    matches!(r.cell.quantize, crate::config::QuantizeSelection::Top(_))
        .then(|| r.quantization.as_ref().map(|q| q.quantized.as_slice()))
        .flatten()
}

pub(super) fn pair<'a>(
    ma: &Manifest,
    ra: &'a [CellRecord],
    mb: &Manifest,
    rb: &'a [CellRecord],
) -> Pairing<'a> {
    let rec_a: BTreeMap<&str, &CellRecord> = ra.iter().map(|r| (r.cell.id.as_str(), r)).collect();
    let rec_b: BTreeMap<&str, &CellRecord> = rb.iter().map(|r| (r.cell.id.as_str(), r)).collect();
    let in_a: BTreeSet<&str> = ma.plan.iter().map(|c| c.id.as_str()).collect();
    let in_b: BTreeSet<&str> = mb.plan.iter().map(|c| c.id.as_str()).collect();
    let cells = ma
        .plan
        .iter()
        .chain(mb.plan.iter().filter(|c| !in_a.contains(c.id.as_str())));
    let mut out = Pairing {
        both: Vec::new(),
        not_compared: Vec::new(),
        shared: in_a.intersection(&in_b).count(),
    };
    for cell in cells {
        let id = cell.id.as_str();
        let not = |side, why: String| NotCompared {
            id: cell.id.clone(),
            label: cell_label(cell),
            side,
            why,
        };
        let (a, b) = (rec_a.get(id).copied(), rec_b.get(id).copied());
        let entry = if !in_b.contains(id) {
            not("A", "B's plan has no cell with this definition".into())
        } else if !in_a.contains(id) {
            not("B", "A's plan has no cell with this definition".into())
        } else {
            match (a, b) {
                (None, None) => not(
                    "both",
                    "planned in both runs, recorded in neither (neither run finished it)".into(),
                ),
                (Some(_), None) => not(
                    "A",
                    "planned in B too, but B has no record of it (B did not finish: a partial run)"
                        .into(),
                ),
                (None, Some(_)) => not(
                    "B",
                    "planned in A too, but A has no record of it (A did not finish: a partial run)"
                        .into(),
                ),
                // One id, two definitions: ids hash definitions, so a plan was edited.
                (Some(a), Some(b)) if a.cell != b.cell => not(
                    "both",
                    "the same id names a different cell in each run (a run's files were edited): not the same measurement".into(),
                ),
                // Runs recorded before the execution settings entered the id share ids across
                // them: the manifests still say how each cell ran.
                (Some(a), Some(b))
                    if execution_of(ma, &a.cell) != execution_of(mb, &b.cell) =>
                {
                    not(
                        "both",
                        format!(
                            "measured with other execution settings (A: {}; B: {}): not the same measurement",
                            settings_text(&execution_of(ma, &a.cell)),
                            settings_text(&execution_of(mb, &b.cell))
                        ),
                    )
                }
                (Some(a), Some(b)) => match (a.status, b.status) {
                    (CellStatus::Ok, CellStatus::Ok) => match (profile_aimed(a), profile_aimed(b)) {
                        (Some(qa), Some(qb)) if qa != qb => not(
                            "both",
                            format!(
                                "quantize = {} quantized other layers in each run (A: {}; B: {}): not the same measurement",
                                a.cell.quantize.name(),
                                qa.join(", "),
                                qb.join(", ")
                            ),
                        ),
                        _ => {
                            out.both.push((a, b));
                            continue;
                        }
                    },
                    (sa, sb) if sa == sb => not(
                        "both",
                        format!("{} in both runs{}", status_word(sa), reason(b)),
                    ),
                    (CellStatus::Ok, sb) => {
                        not("A", format!("{} in B{}", status_word(sb), reason(b)))
                    }
                    (sa, CellStatus::Ok) => {
                        not("B", format!("{} in A{}", status_word(sa), reason(a)))
                    }
                    (sa, sb) => not(
                        "both",
                        format!(
                            "{} in A{}, {} in B{}",
                            status_word(sa),
                            reason(a),
                            status_word(sb),
                            reason(b)
                        ),
                    ),
                },
            }
        };
        out.not_compared.push(entry);
    }
    out
}

/// `device.cuda_graphs = false, ...`, or `the defaults`.
fn settings_text(v: &serde_json::Value) -> String {
    match v.as_object() {
        Some(m) if !m.is_empty() => m
            .iter()
            .map(|(k, v)| format!("device.{k} = {v}"))
            .collect::<Vec<_>>()
            .join(", "),
        _ => "the defaults".into(),
    }
}

/// Why a comparison compared nothing, in a sentence.
/// A cell's execution settings as its run's manifest resolved them (`encoder`: whether its model
/// is one, for the embeddings' key).
fn execution_of(m: &Manifest, cell: &Cell) -> serde_json::Value {
    let encoder = m
        .config
        .models
        .get(&cell.model)
        .is_some_and(|s| s.encoder().is_some());
    execution_identity(&m.config.device, cell.precision, encoder)
}

pub(super) fn why_nothing(ma: &Manifest, mb: &Manifest, p: &Pairing) -> String {
    if p.shared == 0 {
        if ma.experiment != mb.experiment {
            return format!(
                "A is a run of experiment {:?} and B of {:?}: their plans share no cell",
                ma.experiment, mb.experiment
            );
        }
        let changed = if ma.config.protocol != mb.config.protocol {
            "the protocol differs"
        } else if ma.config.dataset != mb.config.dataset {
            "the dataset settings differ"
        } else {
            "the weights, data, protocol or execution settings differ"
        };
        return format!(
            "A's plan and B's plan share no cell ({changed}; a cell id hashes everything that shapes a measurement, so no cell of one run is a cell of the other)"
        );
    }
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for n in &p.not_compared {
        if !n.why.starts_with("B's plan") && !n.why.starts_with("A's plan") {
            let key = n.why.split(" (").next().unwrap_or(&n.why).to_string();
            *counts.entry(key).or_default() += 1;
        }
    }
    let detail: Vec<String> = counts.iter().map(|(why, n)| format!("{n} {why}")).collect();
    format!(
        "the {} cell(s) both plans hold were not measured in both runs: {}",
        p.shared,
        detail.join("; ")
    )
}
