//! The one validation of what a run directory holds when it is read back: every record against
//! the plan's cell with its id, every number a measurement can have (finite, non-negative,
//! windows of at least one loop, powers a device can draw), bounded counts; the manifest's plan
//! (runner cell ids, none twice); sessions and traces. `runner report`, `runner compare`,
//! `--resume` and the Slurm tasks all read through here, so a record that disagrees with its cell
//! is refused by name (exit 2) before anything renders, ranks or compares it.

use std::collections::HashSet;
use std::path::Path;

use super::{CellRecord, CellStatus, Manifest, Session, SCHEMA_VERSION};
use crate::config::ProtocolSection;
use crate::error::InputError;
use crate::matrix::Cell;
use crate::sensor::PowerSample;

mod consistency;
mod domains;
mod text;
mod window;

use domains::{domain_powers, metered_domains};
use window::{short_word, warmup, windows, MAX_SHORT_LIST};

/// More power than any device the runner meters draws (a GPU board draws ~1 kW): an average or
/// sampled power above it is a damaged number, not a measurement.
pub const MAX_POWER_W: f64 = 100_000.0;
/// Longer than any window, warm-up or session (protocol durations are capped at a day).
pub const MAX_DURATION_S: f64 = 1e7;
/// Windows of one unit: `protocol.repeats` is at most this.
pub const MAX_WINDOWS: usize = crate::config::MAX_REPEATS as usize;
/// Layers, components and prefixes of one `layers` cell (DistilBERT has 33 units; a decoder of
/// 128 blocks a few hundred).
pub const MAX_UNITS: usize = 10_000;
/// The largest batch a cell may have (validation allows far less; this keeps every derived
/// figure finite whatever a file says).
const MAX_BATCH: usize = 1 << 20;
/// Characters of a layer's name.
const MAX_NAME_CHARS: usize = 200;

/// What to do about a record that fails a check.
const RECORD_ADVICE: &str = "the file was edited, damaged or copied from another run: delete it to measure the cell again with --resume, or restore the runner's original";

/// Problems found in one file, each a sentence; the first few are reported.
struct Problems<'a> {
    path: &'a Path,
    list: Vec<String>,
}

impl<'a> Problems<'a> {
    fn new(path: &'a Path) -> Self {
        Self {
            path,
            list: Vec::new(),
        }
    }

    fn add(&mut self, problem: String) {
        self.list.push(problem);
    }

    /// A number that must be finite and within `lo..=hi`.
    fn number(&mut self, at: &str, v: f64, lo: f64, hi: f64) {
        if !(v.is_finite() && v >= lo && v <= hi) {
            self.add(format!("{at} is {v:?}, outside {lo:?}..={hi:?}"));
        }
    }

    fn finish(self, advice: &str) -> Result<(), InputError> {
        if self.list.is_empty() {
            return Ok(());
        }
        let shown = self.list.len().min(3);
        let more = match self.list.len() - shown {
            0 => String::new(),
            n => format!(" (and {n} more)"),
        };
        Err(InputError::new(format!(
            "{}: {}{more}; {advice}",
            self.path.display(),
            self.list[..shown].join("; ")
        )))
    }
}

/// A manifest read back: this runner's schema, and a plan of runner cell ids, none twice.
pub fn check_manifest(m: &Manifest, path: &Path) -> Result<(), InputError> {
    let mut p = Problems::new(path);
    if m.schema_version != SCHEMA_VERSION {
        p.add(format!(
            "schema_version {}, but this runner reads version {SCHEMA_VERSION}",
            m.schema_version
        ));
    }
    let mut seen = HashSet::new();
    for (i, c) in m.plan.iter().enumerate() {
        if !crate::matrix::is_cell_id(&c.id) {
            p.add(format!(
                "plan[{i}] has cell id {:?}, which is not a runner cell id (12 hex digits)",
                c.id
            ));
        } else if !seen.insert(c.id.as_str()) {
            p.add(format!(
                "plan[{i}] lists cell {} a second time (a plan holds each cell once)",
                c.id
            ));
        }
        cell_shape(&mut p, &format!("plan[{i}]"), c);
    }
    if let Some(idle) = &m.idle_baseline {
        p.number("idle_baseline.power_w", idle.power_w, 0.0, MAX_POWER_W);
        p.number(
            "idle_baseline.duration_s",
            idle.duration_s,
            0.0,
            MAX_DURATION_S,
        );
        p.number("idle_baseline.energy_j", idle.energy_j, 0.0, f64::MAX);
        domain_powers(&mut p, "idle_baseline.domain_power_w", &idle.domain_power_w);
    }
    for (i, s) in m.sessions.iter().enumerate() {
        session_numbers(&mut p, &format!("sessions[{i}]."), s);
    }
    text::no_control_characters(&mut p, m);
    p.finish("the manifest was edited or damaged: restore the runner's original (a run directory cannot be rendered or resumed without it)")
}

/// A worker's session file read back.
pub fn check_session(s: &Session, path: &Path) -> Result<(), InputError> {
    let mut p = Problems::new(path);
    session_numbers(&mut p, "", s);
    text::no_control_characters(&mut p, s);
    p.finish("the session file was edited or damaged: restore it or remove it")
}

fn session_numbers(p: &mut Problems, at: &str, s: &Session) {
    for (key, v) in [
        ("wall_s", s.wall_s),
        ("protocol_s", s.protocol_s),
        ("estimated_s", s.estimated_s),
    ] {
        if let Some(v) = v {
            p.number(&format!("{at}{key}"), v, 0.0, MAX_DURATION_S);
        }
    }
    if let Some(idle) = &s.idle_baseline {
        p.number(
            &format!("{at}idle_baseline.power_w"),
            idle.power_w,
            0.0,
            MAX_POWER_W,
        );
        domain_powers(
            p,
            &format!("{at}idle_baseline.domain_power_w"),
            &idle.domain_power_w,
        );
    }
}

/// A record read back from `path`, against the plan's cell with its id (`planned`, `None` when
/// the plan has no such cell) and the run's protocol.
pub fn check_record(
    r: &CellRecord,
    path: &Path,
    planned: Option<&Cell>,
    protocol: &ProtocolSection,
) -> Result<(), InputError> {
    let mut p = Problems::new(path);
    if r.schema_version != SCHEMA_VERSION {
        p.add(format!(
            "schema_version {}, but this runner reads version {SCHEMA_VERSION}",
            r.schema_version
        ));
    }
    let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned());
    if !crate::matrix::is_cell_id(&r.cell.id) || stem.as_deref() != Some(r.cell.id.as_str()) {
        p.add(format!(
            "holds cell id {:?}, which is not this file's name or not a runner cell id (12 hex digits)",
            r.cell.id
        ));
    }
    match planned {
        None => p.add(format!(
            "cell {} is not in this run's plan (manifest.json)",
            r.cell.id
        )),
        Some(c) if c != &r.cell => p.add(format!(
            "the record measured {}, but the plan's cell {} is {}",
            describe(&r.cell),
            c.id,
            describe(c)
        )),
        Some(_) => {}
    }
    cell_shape(&mut p, "cell", &r.cell);
    if &r.protocol != protocol {
        p.add("its protocol is not the run's (manifest.json config.protocol)".into());
    }
    if let Some(idle) = r.idle_power_w {
        p.number("idle_power_w", idle, 0.0, MAX_POWER_W);
    }
    domain_powers(&mut p, "idle_domain_power_w", &r.idle_domain_power_w);
    if let Some(w) = &r.warmup {
        warmup(&mut p, "warmup", w);
    }
    // A decoder's decode windows are stored per generated token (results::per_step).
    match r.cell.new_tokens {
        Some(steps) => window::windows_of_steps(
            &mut p,
            "",
            &r.windows,
            1,
            u32::try_from(steps).unwrap_or(u32::MAX),
        ),
        None => windows(&mut p, "", &r.windows, 1),
    }
    consistency::record(&mut p, r);
    if r.sensor.metered.len() > MAX_SHORT_LIST || r.sensor.metered.iter().any(|d| !short_word(d)) {
        p.add(format!(
            "sensor.metered is not a list of at most {MAX_SHORT_LIST} energy domain names"
        ));
    } else {
        let windows = r
            .windows
            .iter()
            .chain(r.layers.iter().flat_map(|l| &l.windows))
            .chain(r.prefixes.iter().flat_map(|u| &u.windows))
            .chain(r.generate.iter().flat_map(|g| &g.prefill_windows));
        metered_domains(&mut p, &r.sensor.domains(), windows, &r.idle_domain_power_w);
    }
    let versions = [
        ("device.cublas_version", r.device.cublas_version.as_ref()),
        (
            "gpu_before.cuda_driver_version",
            r.gpu_before
                .as_ref()
                .and_then(|g| g.cuda_driver_version.as_ref()),
        ),
    ];
    for (key, v) in versions {
        if v.is_some_and(|v| !short_word(v)) {
            p.add(format!(
                "{key} is not a version (1 to 64 printable characters)"
            ));
        }
    }
    if r.layers.len() + r.prefixes.len() > MAX_UNITS {
        p.add(format!(
            "{} layers and prefixes, more than the {MAX_UNITS} a model has",
            r.layers.len() + r.prefixes.len()
        ));
    } else {
        for (i, l) in r.layers.iter().enumerate() {
            let at = format!("layers[{i}] ({})", printable(&l.name));
            unit_name(&mut p, &at, &l.name);
            warmup(&mut p, &format!("{at}.warmup"), &l.warmup);
            windows(&mut p, &format!("{at}."), &l.windows, l.calls_per_loop);
            if r.status == CellStatus::Ok && l.windows.is_empty() {
                p.add(format!("{at} has no windows in a cell recorded ok"));
            }
        }
        for (i, u) in r.prefixes.iter().enumerate() {
            let at = format!("prefixes[{i}] ({})", printable(&u.name));
            unit_name(&mut p, &at, &u.name);
            if u.layers == 0 {
                p.add(format!("{at} runs 0 layers"));
            }
            warmup(&mut p, &format!("{at}.warmup"), &u.warmup);
            windows(&mut p, &format!("{at}."), &u.windows, u.calls_per_loop);
            if r.status == CellStatus::Ok && u.windows.is_empty() {
                p.add(format!("{at} has no windows in a cell recorded ok"));
            }
        }
    }
    // What a record holds follows from its cell: a whole-model cell has windows and no units, a
    // layers cell units of its layer method and no windows of its own, a float cell no selection.
    let scope = r.cell.scope;
    if scope == crate::config::Scope::Model && (!r.layers.is_empty() || !r.prefixes.is_empty()) {
        p.add("a whole-model cell's record holds layers or prefixes".into());
    }
    if scope == crate::config::Scope::Layers && !r.windows.is_empty() {
        p.add("a layers cell's record holds windows of the whole model".into());
    }
    if !r.cell.layer_method.isolated() && !r.layers.is_empty() {
        p.add(format!(
            "layers measured alone, but the cell's layer_method is {}",
            r.cell.layer_method.name()
        ));
    }
    if !r.cell.layer_method.prefix() && !r.prefixes.is_empty() {
        p.add(format!(
            "prefixes measured, but the cell's layer_method is {}",
            r.cell.layer_method.name()
        ));
    }
    if r.quantization.is_some() && r.cell.precision.float_path().is_none() {
        p.add(format!(
            "a quantization record in a cell of float precision {}",
            r.cell.precision.name()
        ));
    }
    if r.status == CellStatus::Ok {
        let units = !r.layers.is_empty() || !r.prefixes.is_empty();
        match r.cell.scope {
            crate::config::Scope::Model if r.windows.is_empty() => {
                p.add("status ok, but no windows were recorded".into())
            }
            crate::config::Scope::Layers if !units => {
                p.add("status ok, but no layer or prefix was recorded".into())
            }
            _ => {}
        }
    }
    if let Some(q) = &r.quantization {
        if q.selection != r.cell.quantize.name() {
            p.add(format!(
                "quantization.selection {:?} is not the cell's quantize = {:?}",
                q.selection,
                r.cell.quantize.name()
            ));
        }
        for l in &q.ranking {
            p.number("quantization.ranking share_pct", l.share_pct, 0.0, 100.0);
        }
    }
    if let Some(f) = &r.fidelity {
        for (key, v) in [
            ("cosine", f.cosine),
            ("min_example_cosine", f.min_example_cosine),
            ("label_agreement", f.label_agreement),
        ] {
            // Rounding may take a cosine of identical outputs a hair past 1.
            p.number(&format!("fidelity.{key}"), v, -1.001, 1.001);
        }
        p.number("fidelity.max_abs_error", f.max_abs_error, 0.0, f64::MAX);
    }
    generate(&mut p, r);
    if let Some(a) = &r.accuracy {
        for (key, v) in [
            ("accuracy", a.accuracy),
            ("ci95_low", a.ci95_low),
            ("ci95_high", a.ci95_high),
            ("majority_rate", a.majority_rate),
        ] {
            p.number(&format!("accuracy.{key}"), v, 0.0, 1.0);
        }
        if a.correct > a.examples {
            p.add(format!(
                "accuracy: {} correct of {} examples",
                a.correct, a.examples
            ));
        }
    }
    text::no_control_characters(&mut p, r);
    p.finish(RECORD_ADVICE)
}

/// A decoder cell's `generate` section: the cell's own lengths, bounded windows, fidelity and
/// perplexity in their ranges; present exactly on decoder cells recorded ok that generated (a
/// `layers` cell's figures are its units', per phase, and it has none).
fn generate(p: &mut Problems, r: &CellRecord) {
    let lengths = r.cell.prompt_len.zip(r.cell.new_tokens);
    let Some(g) = &r.generate else {
        let generated = r.cell.scope != crate::config::Scope::Layers;
        if lengths.is_some() && r.status == CellStatus::Ok && generated {
            p.add("a decoder cell recorded ok without its generate section".into());
        }
        return;
    };
    let Some((prompt, new)) = lengths else {
        p.add("a generate section in an encoder cell (no prompt_len, new_tokens)".into());
        return;
    };
    if (g.prompt_len, g.new_tokens, g.decode_steps_per_loop) != (prompt, new, new) {
        p.add(format!(
            "generate: prompt_len {}, new_tokens {}, {} decode steps per loop, but the cell has prompt_len {prompt} and new_tokens {new}",
            g.prompt_len, g.new_tokens, g.decode_steps_per_loop
        ));
    }
    warmup(p, "generate.prefill_warmup", &g.prefill_warmup);
    windows(p, "generate.prefill_", &g.prefill_windows, 1);
    if r.status == CellStatus::Ok && g.prefill_windows.is_empty() {
        p.add("generate: no prefill windows in a cell recorded ok".into());
    }
    if let Some(f) = &g.fidelity {
        p.number(
            "generate.fidelity.greedy_agreement",
            f.greedy_agreement,
            0.0,
            1.0,
        );
        for (key, v) in [
            ("mean_kl", f.mean_kl),
            ("max_kl", f.max_kl),
            ("max_logit_error", f.max_logit_error),
        ] {
            p.number(&format!("generate.fidelity.{key}"), v, 0.0, f64::MAX);
        }
    }
    if let Some(ppl) = &g.perplexity {
        p.number(
            "generate.perplexity.perplexity",
            ppl.perplexity,
            1.0,
            f64::MAX,
        );
        p.number(
            "generate.perplexity.nll_per_token",
            ppl.nll_per_token,
            0.0,
            f64::MAX,
        );
    }
}

/// A power trace read back: finite times and powers a device can draw.
pub fn check_trace(samples: &[PowerSample], path: &Path) -> Result<(), InputError> {
    let mut p = Problems::new(path);
    for (i, s) in samples.iter().enumerate() {
        p.number(&format!("row {} t_s", i + 2), s.t_s, 0.0, MAX_DURATION_S);
        p.number(
            &format!("row {} power_w", i + 2),
            s.power_w,
            0.0,
            MAX_POWER_W,
        );
        if p.list.len() > 3 {
            break;
        }
    }
    p.finish("the trace was edited or damaged: delete it (the report then shows no trace for the cell) or restore the runner's original")
}

/// `model precision batch B seq S scope [quantize] [method]`, as a record and the plan disagree.
fn describe(c: &Cell) -> String {
    let mut s = format!(
        "{} {} batch {} seq {} scope {}",
        printable(&c.model),
        c.precision.name(),
        c.batch_size,
        c.seq_len,
        c.scope.name()
    );
    if !c.quantize.is_all() {
        s.push_str(&format!(" quantize {}", c.quantize.name()));
    }
    if !c.layer_method.is_isolated() {
        s.push_str(&format!(" layer_method {}", c.layer_method.name()));
    }
    s
}

/// Text from a file, safe to print in one line of a message.
fn printable(s: &str) -> String {
    let flat: String = s
        .chars()
        .take(MAX_NAME_CHARS)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    format!("{flat:?}")
}

/// A cell's batch and sequence length as a plan can hold them.
fn cell_shape(p: &mut Problems, at: &str, c: &Cell) {
    if !(1..=MAX_BATCH).contains(&c.batch_size) {
        p.add(format!("{at}.batch_size is {}", c.batch_size));
    }
    if !(1..=MAX_BATCH).contains(&c.seq_len) {
        p.add(format!("{at}.seq_len is {}", c.seq_len));
    }
}

fn unit_name(p: &mut Problems, at: &str, name: &str) {
    if name.is_empty() || name.chars().count() > MAX_NAME_CHARS {
        p.add(format!(
            "{at}: a layer's name is 1 to {MAX_NAME_CHARS} characters"
        ));
    } else if name.chars().any(char::is_control) {
        p.add(format!("{at}: a layer's name holds control characters"));
    }
}
