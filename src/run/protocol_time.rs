//! The protocol's own time for a cell's units: the least it can take (the line `runner plan` and a
//! run print) and its time for units of known loop times (the estimate's core). Both count every
//! unit a cell measures through the whole protocol (a decoder's layers cell: per phase each layer,
//! its two halves, the embeddings and the head alone, and a prefix per layer) and what the energy
//! sensor adds to every window: NVML's counter must update [`MIN_COUNTER_TICKS`] times inside a
//! window, which stretches a short window to about a second, and a window starts on an update.
//! Session 6's decoder layers cells on an H100 took 2.08x their estimate because the windows'
//! stretch was left out (0.99 s a window against `min_window_s = 0.5`).

use std::collections::BTreeMap;

use crate::config::{LayerIsolation, LayerMethod, LoadedExperiment, ProtocolSection, Scope};
use crate::matrix::Cell;
use crate::measure::IdleBaseline;
use crate::model::ModelSpec;
use crate::sensor::energy::{MIN_COUNTER_TICKS, NOMINAL_COUNTER_UPDATE_S};
use crate::sensor::{SensorInfo, GPU_BOARD};

/// The fewest counter updates of an idle baseline whose interval the floor takes (4 s of the
/// default 5 s baseline): the poll's lag is then at most ~1 % of it.
const MEASURED_TICKS: u64 = 4 * MIN_COUNTER_TICKS;

/// What the energy sensor adds to every window of the protocol.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WindowFloor {
    /// The shortest window the sensor lets end, seconds (NVML: [`MIN_COUNTER_TICKS`] updates).
    pub least_window_s: f64,
    /// The mean wait before a window for its start to fall on a counter update, seconds.
    pub start_wait_s: f64,
    /// The counter's update interval the floor comes from; `None` without a counter.
    pub update_s: Option<f64>,
}

impl WindowFloor {
    /// No counter to wait for (the CPU's RAPL reads at the edges, or no energy sensor).
    pub const NONE: WindowFloor = WindowFloor {
        least_window_s: 0.0,
        start_wait_s: 0.0,
        update_s: None,
    };

    /// A counter that updates every `update_s` seconds: a window spans [`MIN_COUNTER_TICKS`]
    /// updates and starts on one (half an interval's wait on average).
    pub fn counter(update_s: f64) -> Self {
        WindowFloor {
            least_window_s: MIN_COUNTER_TICKS as f64 * update_s,
            start_wait_s: update_s / 2.0,
            update_s: Some(update_s),
        }
    }

    /// A run's floor: where the GPU's counter is metered, its update interval as the idle
    /// baseline measured it (its duration over its counter updates), else NVML's nominal one.
    /// The baseline's end waits on a 50 ms poll, which lengthens a 1 s baseline's interval by
    /// up to 10 % (session 6: 10 updates in 1.1 s, where its windows saw 10 in 0.99 s), so a
    /// baseline of fewer than [`MEASURED_TICKS`] updates leaves the nominal interval.
    pub fn of_run(sensor: &SensorInfo, idle: Option<&IdleBaseline>) -> Self {
        let measured = idle.and_then(|i| {
            let ticks = i.counter_ticks.filter(|&t| t >= MEASURED_TICKS)?;
            Some(i.duration_s / ticks as f64).filter(|s| s.is_finite() && *s > 0.0)
        });
        match measured {
            Some(update_s) => WindowFloor::counter(update_s),
            None if sensor.measures_energy && sensor.metered.iter().any(|d| d == GPU_BOARD) => {
                WindowFloor::counter(NOMINAL_COUNTER_UPDATE_S)
            }
            None => WindowFloor::NONE,
        }
    }
}

/// Units a decoder's layers cell measures in each phase through the protocol: alone (each layer,
/// its attention and MLP halves, the embeddings and the head; `in-step` isolation also each
/// top-level unit's step predecessor alone, one more unit per embeddings, layer and head) and
/// prefixes (through the embeddings, each layer, the head): (isolated, prefix).
pub fn decoder_layer_units(
    layers: usize,
    method: LayerMethod,
    isolation: LayerIsolation,
) -> (usize, usize) {
    let predecessors = if isolation.in_step() { layers + 2 } else { 0 };
    (
        if method.isolated() {
            3 * layers + 2 + predecessors
        } else {
            0
        },
        if method.prefix() { layers + 2 } else { 0 },
    )
}

/// Units an encoder's layers cell measures: alone (embeddings, pooling and classifier, each
/// block and its four components) and prefixes (one per top-level layer): (isolated, prefix).
pub fn encoder_layer_units(blocks: usize, method: LayerMethod) -> (usize, usize) {
    (
        if method.isolated() { 5 * blocks + 3 } else { 0 },
        if method.prefix() { blocks + 3 } else { 0 },
    )
}

/// The protocol's time for units of the given loop times, seconds: per unit its warm-up (at
/// least `warmup_min_loops` loops, then one more), the stabilization pause and `repeats`
/// windows, each at least `min_window_s`, `min_loops` loops and the sensor's floor, after the
/// wait for its start; the cell's cool-down after them.
pub fn protocol_s(p: &ProtocolSection, unit_loops_s: &[f64], floor: WindowFloor) -> f64 {
    let unit = |loop_s: f64| {
        let warmup = p.warmup_s.max(f64::from(p.warmup_min_loops) * loop_s) + loop_s;
        let window = p
            .min_window_s
            .max(f64::from(p.min_loops) * loop_s)
            .max(floor.least_window_s)
            + floor.start_wait_s;
        warmup + p.stabilize_s + f64::from(p.repeats) * window
    };
    unit_loops_s.iter().map(|&l| unit(l)).sum::<f64>() + p.cooldown_s
}

/// The least time the protocol spends on `cells`, in seconds: per cell the stabilization pause
/// and cool-down, and per measured unit (the model, each phase of a decoder, or each layer,
/// component and prefix of a `layers` cell) the minimum warm-up and `repeats` windows of at
/// least `min_window_s` and the sensor's floor. A decoder's layer count comes from `specs`
/// (one layer where they do not say). Slow loops, fidelity passes, loading and the idle
/// baseline come on top, so a run never takes less.
pub fn least_protocol_s(
    exp: &LoadedExperiment,
    specs: &BTreeMap<String, ModelSpec>,
    cells: &[&Cell],
    floor: WindowFloor,
) -> f64 {
    let p = &exp.config.protocol;
    let per_unit = p.warmup_s + f64::from(p.repeats) * p.min_window_s.max(floor.least_window_s);
    cells
        .iter()
        .map(|c| {
            let units = match c.scope {
                // A decoder cell measures two phases, each through the whole protocol.
                Scope::Model if c.prompt_len.is_some() => 2,
                Scope::Model => 1,
                Scope::Layers if c.prompt_len.is_some() => {
                    let layers = specs
                        .get(&c.model)
                        .and_then(|s| s.decoder())
                        .map_or(1, |d| d.shapes.layers);
                    let isolation = p
                        .layer_isolation
                        .unwrap_or_else(LayerIsolation::decoder_default);
                    let (isolated, prefix) = decoder_layer_units(layers, c.layer_method, isolation);
                    2 * (isolated + prefix)
                }
                Scope::Layers => exp
                    .config
                    .models
                    .get(&c.model)
                    .and_then(|m| m.encoder_preset())
                    .map_or(1, |preset| {
                        let (isolated, prefix) =
                            encoder_layer_units(preset.n_layers, c.layer_method);
                        isolated + prefix
                    }),
            };
            p.stabilize_s + p.cooldown_s + units as f64 * per_unit
        })
        .sum()
}

/// [`least_protocol_s`] with nothing known of the models' depths or the sensor (the fuzz target
/// checks that every experiment it loads gets a finite figure).
pub fn protocol_lower_bound_s(exp: &LoadedExperiment, cells: &[&Cell]) -> f64 {
    least_protocol_s(exp, &BTreeMap::new(), cells, WindowFloor::NONE)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn idle(duration_s: f64, ticks: Option<u64>) -> IdleBaseline {
        IdleBaseline {
            settle_s: 0.0,
            duration_s,
            energy_j: 100.0 * duration_s,
            power_w: 100.0,
            domain_power_w: BTreeMap::new(),
            counter_ticks: ticks,
            num_power_samples: 0,
        }
    }

    fn sensor(metered: &[&str]) -> SensorInfo {
        SensorInfo {
            kind: "test".into(),
            measures_energy: !metered.is_empty(),
            note: String::new(),
            metered: metered.iter().map(|d| d.to_string()).collect(),
        }
    }

    #[test]
    fn the_protocol_prices_warm_up_windows_and_slow_loops() {
        let p = ProtocolSection {
            warmup_s: 1.0,
            warmup_min_loops: 3,
            stabilize_s: 0.5,
            min_window_s: 2.0,
            min_loops: 10,
            repeats: 6,
            cooldown_s: 0.0,
            ..ProtocolSection::default()
        };
        let none = WindowFloor::NONE;
        // Fast loops: the minimum times. Warm-up 1 s (+ the first loop), 6 windows of 2 s.
        assert!((protocol_s(&p, &[0.01], none) - (1.01 + 0.5 + 12.0)).abs() < 1e-9);
        // Slow loops: ten loops a window outlast 2 s, three loops outlast the warm-up.
        assert!((protocol_s(&p, &[0.5], none) - (1.5 + 0.5 + 0.5 + 30.0)).abs() < 1e-9);
        // A counter of 0.3 s: windows of 10 updates (3 s) outlast 2 s, each after 0.15 s.
        let counter = WindowFloor::counter(0.3);
        let windows = 6.0 * (3.0 + 0.15);
        assert!((protocol_s(&p, &[0.01], counter) - (1.01 + 0.5 + windows)).abs() < 1e-9);
        // Slow loops still rule where they outlast the floor.
        assert!((protocol_s(&p, &[0.5], counter) - (1.5 + 0.5 + 0.5 + 6.0 * 5.15)).abs() < 1e-9);
    }

    #[test]
    fn the_floor_comes_from_the_idle_baseline_where_it_is_long_enough() {
        let gpu = sensor(&[GPU_BOARD]);
        // 50 updates in 5.1 s: 102 ms an update, windows of 1.02 s.
        let f = WindowFloor::of_run(&gpu, Some(&idle(5.1, Some(50))));
        assert!((f.update_s.unwrap() - 0.102).abs() < 1e-12);
        assert!((f.least_window_s - 1.02).abs() < 1e-9);
        assert!((f.start_wait_s - 0.051).abs() < 1e-12);
        // A 1 s baseline's interval is the poll's as much as the counter's: the nominal one.
        let f = WindowFloor::of_run(&gpu, Some(&idle(1.1, Some(10))));
        assert_eq!(f, WindowFloor::counter(NOMINAL_COUNTER_UPDATE_S));
        assert_eq!(
            WindowFloor::of_run(&gpu, None),
            WindowFloor::counter(NOMINAL_COUNTER_UPDATE_S)
        );
        // RAPL reads at the edges; no sensor waits for nothing.
        let rapl = sensor(&["cpu-package"]);
        assert_eq!(
            WindowFloor::of_run(&rapl, Some(&idle(5.0, None))),
            WindowFloor::NONE
        );
        assert_eq!(WindowFloor::of_run(&sensor(&[]), None), WindowFloor::NONE);
    }

    #[test]
    fn a_layers_cell_counts_every_unit_and_prefix_of_both_phases() {
        let warm = LayerIsolation::Warm;
        assert_eq!(decoder_layer_units(4, LayerMethod::Both, warm), (14, 6));
        assert_eq!(
            decoder_layer_units(30, LayerMethod::Isolated, warm),
            (92, 0)
        );
        assert_eq!(decoder_layer_units(30, LayerMethod::Prefix, warm), (0, 32));
        // Cold copies are still one unit each; in-step adds each top-level unit's predecessor
        // alone (the embeddings, 4 blocks, the head), and leaves the prefixes as they are.
        let cold = LayerIsolation::Cold;
        assert_eq!(decoder_layer_units(4, LayerMethod::Both, cold), (14, 6));
        let in_step = LayerIsolation::InStep;
        assert_eq!(decoder_layer_units(4, LayerMethod::Both, in_step), (20, 6));
        assert_eq!(decoder_layer_units(4, LayerMethod::Prefix, in_step), (0, 6));
        assert_eq!(encoder_layer_units(6, LayerMethod::Both), (33, 9));
    }

    /// Session 6's `experiments/llm_own_layers.toml` on an H100 (docs/results/
    /// 2026-12-06-nvidia-h100-llm-deployed/per-layer-s6/call2/run-layers.log): its two cells' 42
    /// units spent 124.5 s in windows, 8.6 s warming up and 4.1 s stabilizing; the estimate
    /// without the counter's floor priced the windows at 63 s and the run at ~76 s, where its
    /// cells took 158 s (2.08x).
    #[test]
    fn session_6s_layers_cells_are_priced_with_the_counters_floor() {
        let p = ProtocolSection {
            warmup_s: 0.2,
            warmup_min_loops: 2,
            stabilize_s: 0.1,
            min_window_s: 0.5,
            min_loops: 2,
            repeats: 3,
            cooldown_s: 0.0,
            ..ProtocolSection::default()
        };
        // The whole-model cell: a prefill of 1.06 ms, a decode loop of 128 steps of 0.536 ms;
        // the layers cell: SmolLM2's widths cut to 4 layers, both methods, both phases.
        let (isolated, prefix) = decoder_layer_units(4, LayerMethod::Both, LayerIsolation::Warm);
        let mut units = vec![1.06e-3, 128.0 * 0.536e-3];
        units.extend(std::iter::repeat_n(1e-4, 2 * (isolated + prefix)));
        assert_eq!(units.len(), 42);
        let windows = |floor: WindowFloor| {
            let no_wait = WindowFloor {
                start_wait_s: 0.0,
                ..floor
            };
            let no_windows = ProtocolSection { repeats: 0, ..p };
            protocol_s(&p, &units, no_wait) - protocol_s(&no_windows, &units, no_wait)
        };
        let nvml = WindowFloor::counter(NOMINAL_COUNTER_UPDATE_S);
        // 126 windows of 10 updates: within 3 % of the 124.5 s measured; without: half of it.
        assert!(
            (windows(nvml) / 124.5 - 1.0).abs() < 0.03,
            "{}",
            windows(nvml)
        );
        assert!(windows(WindowFloor::NONE) / 124.5 < 0.55);
        // The whole protocol, each window's wait for its start included, against what the
        // cells took (loading and captures, outside the protocol, are what is left).
        let total = protocol_s(&p, &units, nvml);
        assert!((0.85..1.0).contains(&(total / 158.0)), "{total}");
        assert!(protocol_s(&p, &units, WindowFloor::NONE) / 158.0 < 0.5);
    }

    /// Session 8's in-step run of `experiments/llm_own_layers.toml` on an H200 (docs/results/
    /// 2026-12-06-nvidia-h200-llm-deployed/per-layer-s8/run-layers.log: `--set
    /// protocol.layer_isolation=in-step --set 'matrix.layer_method=["isolated"]' --set
    /// protocol.repeats=1`): estimated ~43 s, its cells took 64 s (1.49x). The estimate counted
    /// 14 isolated units a phase; in-step measures 20, each top-level unit's predecessor alone too.
    #[test]
    fn session_8s_in_step_cells_are_priced_with_their_predecessor_loops() {
        let p = ProtocolSection {
            warmup_s: 0.2,
            warmup_min_loops: 2,
            stabilize_s: 0.1,
            min_window_s: 0.5,
            min_loops: 2,
            repeats: 1,
            cooldown_s: 0.0,
            ..ProtocolSection::default()
        };
        let nvml = WindowFloor::counter(NOMINAL_COUNTER_UPDATE_S);
        let cells_s = |isolation| {
            let (isolated, _) = decoder_layer_units(4, LayerMethod::Isolated, isolation);
            // The whole-model cell (a prefill of 1.02 ms, 128 steps of 0.525 ms), then the
            // layers cell's units of both phases.
            let mut units = vec![1.02e-3, 128.0 * 0.525e-3];
            units.extend(std::iter::repeat_n(1e-4, 2 * isolated));
            protocol_s(&p, &units, nvml)
        };
        let before = cells_s(LayerIsolation::Cold);
        let now = cells_s(LayerIsolation::InStep);
        assert!(before / 64.0 < 0.7, "{before}");
        assert!((0.85..1.0).contains(&(now / 64.0)), "{now}");
    }
}
