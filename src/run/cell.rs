//! One cell's frame: its record opened, the precision probed on the device (a shape it cannot run
//! is a skipped cell), the workload measured (`classify.rs` for encoders), the GPU state after.
//! Any error becomes a failed record with a reason a user can act on; an interrupt drops the cell
//! unrecorded.

use std::collections::HashMap;

use anyhow::Result;
use candle_core::{DType, Tensor};
use indicatif::ProgressBar;

use super::console::cell_label;
use super::Prepared;
use crate::config::Scope;
use crate::device::SelectedDevice;
use crate::matrix::Cell;
use crate::measure::SamplerOverhead;
use crate::model::workload::WorkloadKind;
use crate::model::{self, ModelStore};
use crate::probe;
use crate::results::{now_rfc3339, CellRecord, CellStatus, SCHEMA_VERSION};
use crate::sensor::{self, EnergySensor, SensorInfo};

/// What the cells of one session build once and share: the models (with their host-side random
/// weights and fp32 reference logits) and the trained probe heads, per (model, seq_len). Dropped
/// after a failed cell, with whatever it left cached.
#[derive(Default)]
pub(super) struct Store {
    pub(super) models: ModelStore,
    pub(super) probes: HashMap<(String, usize), probe::ProbeHead>,
    /// Decoders' reference runs (fp32, or bf16 above ~3 B parameters), for fidelity.
    pub(super) references: super::generate::References,
}

/// A cell's record, power trace and (on the first cell) the sampler-overhead check; `None` when
/// an interrupt stopped it before it finished.
pub(super) type CellOutcome = Option<(
    CellRecord,
    Vec<sensor::PowerSample>,
    Option<SamplerOverhead>,
)>;

#[allow(clippy::too_many_arguments)]
pub(super) fn run_cell(
    cell: &Cell,
    prepared: &Prepared,
    store: &mut Store,
    selected: &SelectedDevice,
    sensor: &mut dyn EnergySensor,
    sensor_info: &SensorInfo,
    idle: Option<&crate::measure::IdleBaseline>,
    check_overhead: bool,
    progress: &ProgressBar,
    earlier: &[CellRecord],
) -> CellOutcome {
    let device = &selected.device;
    let mut record = CellRecord {
        schema_version: SCHEMA_VERSION,
        cell: cell.clone(),
        status: CellStatus::Ok,
        reason: None,
        precision_executed: None,
        implementation: None,
        worker: None,
        device: selected.info.clone(),
        sensor: sensor_info.clone(),
        protocol: prepared.exp.config.protocol.clone(),
        idle_power_w: idle.map(|i| i.power_w),
        idle_domain_power_w: idle.map(|i| i.domain_power_w.clone()).unwrap_or_default(),
        gpu_before: sensor.gpu_state(),
        gpu_after: None,
        warmup: None,
        windows: Vec::new(),
        layers: Vec::new(),
        prefixes: Vec::new(),
        quantization: None,
        reconciliation: None,
        fidelity: None,
        accuracy: None,
        generate: None,
        dataset: None,
        truncated_examples: None,
        started_at: now_rfc3339(),
        ended_at: String::new(),
    };
    let mut trace = Vec::new();
    let mut overhead = None;
    let spec = &prepared.specs[&cell.model];
    let workload = spec.workload();
    let crate_decoder = spec
        .decoder()
        .is_some_and(|d| d.implementation != crate::config::Implementation::Own);
    let refused = if crate_decoder && cell.scope == Scope::Layers {
        Err(model::Unsupported::Shape(
            "scope = \"layers\": candle-transformers' decoders keep their layers private, so they have no per-layer profile; the runner's own Llama-family decoder has one (implementation = \"own\": llama, mistral, qwen2, qwen3)".into(),
        ))
    } else if let Some(why) = spec
        .decoder()
        .and_then(|d| d.refuses_batch(cell.precision, cell.batch_size))
    {
        Err(model::Unsupported::Shape(why))
    } else {
        model::probe_cell(spec, cell.precision, device)
    };
    if let Err(unsupported) = refused {
        (record.status, record.reason) = match unsupported {
            model::Unsupported::Shape(why) => (CellStatus::Skipped, Some(why)),
            model::Unsupported::Device(why) => (CellStatus::Failed, Some(why)),
        };
    } else if let Some(why) = cutlass_missing(&prepared.exp.config.device, device) {
        (record.status, record.reason) = (CellStatus::Failed, Some(why));
    } else {
        let label = cell_label(cell);
        let mut on_progress = |phase: &str| progress.set_message(format!("{label}: {phase}"));
        // Timed GEMM tactics are an encoder setting (classify.rs sets it per cell); any other
        // workload runs the row rule, whatever an earlier cell of the process left.
        crate::ops::cutlass::tactics::set_tactics(crate::config::GemmTactics::Rule);
        // The one place a cell's workload is chosen.
        let measured = match workload {
            WorkloadKind::Classify => super::classify::measure(
                cell,
                prepared,
                store,
                device,
                sensor,
                check_overhead,
                &mut on_progress,
                &mut record,
                earlier,
            ),
            WorkloadKind::Generate if cell.scope == Scope::Layers => {
                super::generate_layers::measure(
                    cell,
                    prepared,
                    store,
                    device,
                    sensor,
                    &mut on_progress,
                    &mut record,
                )
                .map(|trace| (trace, None))
            }
            WorkloadKind::Generate => super::generate::measure(
                cell,
                prepared,
                store,
                device,
                sensor,
                check_overhead,
                &mut on_progress,
                &mut record,
            ),
        };
        match measured {
            Ok((t, o)) => (trace, overhead) = (t, o),
            Err(e) if crate::interrupt::is_interrupt(&e) => return None,
            Err(e) => {
                record.status = CellStatus::Failed;
                record.reason = Some(failure_reason(cell, &e));
            }
        }
    }
    record.gpu_after = sensor.gpu_state();
    record.ended_at = now_rfc3339();
    Some((record, trace, overhead))
}

/// Refuses NaN or infinite outputs: a model that computes garbage fast is not a measurement.
pub(super) fn ensure_finite(t: &Tensor, what: &str) -> Result<()> {
    let values: Vec<f32> = t.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
    anyhow::ensure!(
        values.iter().all(|v| v.is_finite()),
        "{what} produced NaN or infinite values"
    );
    Ok(())
}

/// A failed cell's reason as recorded: the error chain, with what to do for the failures a user
/// can act on.
pub(super) fn failure_reason(cell: &Cell, err: &anyhow::Error) -> String {
    // candle attaches a captured backtrace to some errors ("   0: <unknown>" lines in a stripped
    // binary): noise in a record and a report, so only the message is kept.
    let full = format!("{err:#}");
    let is_frame = |line: &str| {
        let t = line.trim_start();
        t.starts_with("at ")
            || t.split_once(": ")
                .is_some_and(|(n, _)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    };
    let text = full
        .lines()
        .filter(|l| !is_frame(l))
        .collect::<Vec<_>>()
        .join("\n")
        .trim()
        .to_string();
    if text.contains("CUDA_ERROR_OUT_OF_MEMORY") || text.contains("out of memory") {
        format!(
            "GPU out of memory at batch {} seq {} ({text}): use a smaller batch_size or seq_len for this cell; the other cells are unaffected",
            cell.batch_size, cell.seq_len
        )
    } else {
        text
    }
}

/// `device.gemm_library = "cutlass"` on a GPU with a binary that has no CUTLASS GEMMs: refused
/// before measuring, rather than measured on cuBLASLt under a cell id that says CUTLASS.
fn cutlass_missing(
    settings: &crate::config::DeviceSection,
    device: &candle_core::Device,
) -> Option<String> {
    (settings.gemm_library == crate::config::GemmLibrary::Cutlass
        && device.is_cuda()
        && !crate::ops::cutlass::compiled())
    .then(|| {
        format!(
            "device.gemm_library = \"cutlass\", but this binary has no CUTLASS GEMMs ({}): build it with scripts/build-cuda.sh (CUTLASS headers, CUDA_COMPUTE_CAP=90), or set device.gemm_library = \"cublaslt\"",
            crate::ops::cutlass::BUILD
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Precision, Scope};

    fn cell() -> Cell {
        Cell {
            id: "0123456789ab".into(),
            model: "m".into(),
            precision: Precision::Fp16,
            batch_size: 131072,
            seq_len: 512,
            prompt_len: None,
            new_tokens: None,
            scope: Scope::Model,
            quantize: Default::default(),
            layer_method: Default::default(),
            prefill_attention: crate::config::PrefillAttention::Plain,
        }
    }

    #[test]
    fn out_of_memory_says_which_shape_and_what_to_do() {
        // The text candle returned on the H100 for batch 131072 x seq 512.
        let err = anyhow::anyhow!("DriverError(CUDA_ERROR_OUT_OF_MEMORY, \"out of memory\")");
        assert_eq!(
            failure_reason(&cell(), &err),
            "GPU out of memory at batch 131072 seq 512 (DriverError(CUDA_ERROR_OUT_OF_MEMORY, \"out of memory\")): use a smaller batch_size or seq_len for this cell; the other cells are unaffected"
        );
        let with_backtrace = anyhow::anyhow!(
            "DriverError(CUDA_ERROR_OUT_OF_MEMORY, \"out of memory\")\n   0: <unknown>\n   1: <unknown>\n      at src/x.rs:3\n "
        );
        assert_eq!(
            failure_reason(&cell(), &with_backtrace),
            failure_reason(&cell(), &err)
        );
        let other = anyhow::anyhow!("the logits produced NaN or infinite values");
        assert_eq!(
            failure_reason(&cell(), &other),
            "the logits produced NaN or infinite values"
        );
    }
}
