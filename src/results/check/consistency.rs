//! What the parts of one record say about each other: a cell that did not measure says why and
//! holds no numbers of a measurement; energies only from a sensor that meters energy, in every
//! window of a unit or in none; the dataset's counts add up; a `layers` cell's units are named
//! once each, in order, every component under a layer of the record.

use std::collections::HashSet;

use super::window::energy_in_all_or_none;
use super::{printable, Problems, MAX_UNITS};
use crate::results::{CellRecord, CellStatus};

/// Characters of a failure or skip reason (an error chain with what to do: a few hundred).
const MAX_REASON_CHARS: usize = 64 * 1024;
/// Calls of a unit in one loop (`run::layers` caps them at 64).
const MAX_CALLS_PER_LOOP: u32 = 4096;
/// Samples a dataset hands out in one cell: far more than any protocol serves, exactly
/// representable in the f64 the statistics use.
const MAX_SAMPLES_SERVED: u64 = 1 << 53;

pub(super) fn record(p: &mut Problems, r: &CellRecord) {
    status(p, r);
    energy(p, r);
    dataset(p, r);
    units(p, r);
}

/// A failed or skipped cell says why; a skipped one (refused before it ran) holds no windows.
fn status(p: &mut Problems, r: &CellRecord) {
    let reason = r.reason.as_deref().unwrap_or("");
    if r.status != CellStatus::Ok && reason.trim().is_empty() {
        p.add(format!(
            "status {}, but no reason is recorded",
            status_name(r.status)
        ));
    }
    if reason.chars().count() > MAX_REASON_CHARS {
        p.add(format!(
            "reason is longer than the {MAX_REASON_CHARS} characters a reason is"
        ));
    }
    let measured = !r.windows.is_empty() || !r.layers.is_empty() || !r.prefixes.is_empty();
    if r.status == CellStatus::Skipped && measured {
        p.add("status skipped (the cell never ran), but it holds windows".into());
    }
}

fn status_name(s: CellStatus) -> &'static str {
    match s {
        CellStatus::Ok => "ok",
        CellStatus::Skipped => "skipped",
        CellStatus::Failed => "failed",
    }
}

/// Energies in every window of each unit or in none, and only where the record's sensor meters
/// energy: a number from nowhere is never a measurement.
fn energy(p: &mut Problems, r: &CellRecord) {
    let mut metered = energy_in_all_or_none(p, "", &r.windows);
    for (i, l) in r.layers.iter().enumerate() {
        metered |= energy_in_all_or_none(p, &format!("layers[{i}]."), &l.windows);
    }
    for (i, u) in r.prefixes.iter().enumerate() {
        metered |= energy_in_all_or_none(p, &format!("prefixes[{i}]."), &u.windows);
    }
    if metered && !r.sensor.measures_energy {
        p.add(format!(
            "windows hold energies, but its sensor ({}) measures none",
            printable(&r.sensor.kind)
        ));
    }
}

fn dataset(p: &mut Problems, r: &CellRecord) {
    if let Some(d) = &r.dataset {
        if d.examples == 0 {
            p.add("dataset.examples is 0".into());
        }
        if d.samples_served > MAX_SAMPLES_SERVED || d.wraparounds > d.samples_served {
            p.add(format!(
                "dataset: {} samples served with {} wraparounds",
                d.samples_served, d.wraparounds
            ));
        }
    }
    if let Some(t) = r.truncated_examples {
        let examples = r
            .dataset
            .map_or(MAX_SAMPLES_SERVED as usize, |d| d.examples);
        if t > examples {
            p.add(format!(
                "truncated_examples is {t}, more than the dataset's {examples} examples"
            ));
        }
    }
}

/// Units are matched by name (reports, charts, `runner compare`): each name once per phase (a
/// decoder profiles its prefill and its decode step apart), indices in order within a phase, a
/// component's parent a layer of its phase listed before it.
fn units(p: &mut Problems, r: &CellRecord) {
    let mut names = HashSet::new();
    let mut last_index = std::collections::HashMap::new();
    for (i, l) in r.layers.iter().enumerate() {
        let at = format!("layers[{i}] ({})", printable(&l.name));
        if !names.insert((l.phase, l.name.as_str())) {
            p.add(format!("{at} is listed a second time"));
        }
        let last = last_index.insert(l.phase, l.index);
        if l.index > MAX_UNITS || last.is_some_and(|last| l.index <= last) {
            p.add(format!(
                "{at}.index is {}, not after the layer before it",
                l.index
            ));
        }
        if let Some(parent) = &l.parent {
            let listed_before = r.layers[..i]
                .iter()
                .any(|u| &u.name == parent && u.parent.is_none() && u.phase == l.phase);
            if !listed_before {
                p.add(format!(
                    "{at}.parent {} is not a layer listed before it",
                    printable(parent)
                ));
            }
        }
        calls(p, &at, l.calls_per_loop);
    }
    let mut names = HashSet::new();
    for (i, u) in r.prefixes.iter().enumerate() {
        let at = format!("prefixes[{i}] ({})", printable(&u.name));
        if !names.insert((u.phase, u.name.as_str())) {
            p.add(format!("{at} is listed a second time"));
        }
        if u.layers > MAX_UNITS {
            p.add(format!("{at} runs {} layers", u.layers));
        }
        calls(p, &at, u.calls_per_loop);
    }
}

fn calls(p: &mut Problems, at: &str, calls_per_loop: u32) {
    if calls_per_loop > MAX_CALLS_PER_LOOP {
        p.add(format!(
            "{at}.calls_per_loop is {calls_per_loop}, more than the {MAX_CALLS_PER_LOOP} a loop runs"
        ));
    }
}
