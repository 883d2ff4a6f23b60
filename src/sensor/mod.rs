//! Energy sensors. A sensor meters one window at a time: started and stopped around a
//! synchronized stretch of work. NVML meters the GPU board (`nvml.rs`), RAPL the CPU packages and
//! their DRAM (`rapl.rs` over `powercap.rs`); `compose.rs` meters one window with several side by
//! side, and `select.rs` picks them for `sensor.kind`. Without a supported sensor the run still
//! completes, and every record and report says energy was not measured and why.

mod compose;
pub mod energy;
pub mod nvml;
pub mod powercap;
pub mod rapl;
mod select;

use std::collections::BTreeMap;

use anyhow::Result;
use serde::{Deserialize, Serialize};

pub use compose::Composite;
pub use select::{select, Selection};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SensorInfo {
    /// "none" (or, on GPUs, "nvml").
    pub kind: String,
    pub measures_energy: bool,
    /// For `none`: why energy is not measured (a clause, e.g. "the cells ran on the CPU ...").
    pub note: String,
    /// What the energy figures include, one domain each: [`GPU_BOARD`] for NVML's counter,
    /// [`CPU_PACKAGE`] and [`DRAM`] for RAPL's. Empty for sensors that measure no energy, and in
    /// records made before it was recorded (their energy is the GPU board's).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub metered: Vec<String>,
}

/// The energy domain of NVML's total-energy counter: the whole GPU board (the GPU, its memory
/// and the board's own circuitry), no CPU, host memory or the rest of the host.
pub const GPU_BOARD: &str = "gpu-board";
/// Every CPU package (socket) of the host, RAPL's package domains summed: cores, caches, the
/// memory controller, whatever else runs on the host included.
pub const CPU_PACKAGE: &str = "cpu-package";
/// The host's DRAM, RAPL's DRAM domains summed (where the CPU has them: many Xeons do, AMD's
/// do not).
pub const DRAM: &str = "dram";

impl SensorInfo {
    /// The domains its energy covers: `metered`, or for a record made before sensors said so,
    /// the GPU board (NVML was the only sensor then). Empty when energy was not measured.
    pub fn domains(&self) -> Vec<String> {
        match (self.measures_energy, self.metered.is_empty()) {
            (false, _) => Vec::new(),
            (true, true) => vec![GPU_BOARD.to_string()],
            (true, false) => self.metered.clone(),
        }
    }
}

/// One power sample from a background sampler: seconds since the window started, watts.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PowerSample {
    pub t_s: f64,
    pub power_w: f64,
}

/// What a sensor measured over one window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WindowEnergy {
    /// Best estimate over every metered domain: counter deltas plus tail correction.
    pub energy_j: f64,
    /// Energy-counter differences between the window's two reads, summed over domains.
    pub counter_delta_j: f64,
    /// Energy since the counter's last update before the end read (see sensor::nvml).
    pub tail_correction_j: f64,
    /// Updates of the GPU's energy counter seen inside the window (its resolution); `None` for
    /// RAPL alone, whose counters update about every millisecond and are not watched.
    pub counter_ticks: Option<u64>,
    /// The power trace integrated by the trapezoid rule, for comparison with the counter.
    pub trace_energy_j: Option<f64>,
    pub samples: Vec<PowerSample>,
    /// Why the GPU held its clocks back at any sample of the window (NVML's clock-throttle
    /// reasons, see [`throttle_reason_names`]); empty when none did, `None` where the sensor
    /// cannot tell.
    pub throttle_reasons: Option<Vec<String>>,
    /// The lowest and highest SM clock sampled in the window, MHz.
    pub sm_clock_mhz: Option<(u32, u32)>,
    /// `energy_j` by domain ([`GPU_BOARD`], [`CPU_PACKAGE`], [`DRAM`]): they add up to it.
    pub domains: BTreeMap<String, f64>,
}

/// NVML's clock-throttle reasons (`nvmlClocksThrottleReason*`, a bit mask) by name, in bit
/// order. Records keep the names, so reports read them without NVML.
pub const THROTTLE_REASONS: [(u64, &str); 9] = [
    (0x1, "gpu_idle"),
    (0x2, "applications_clocks_setting"),
    (0x4, "sw_power_cap"),
    (0x8, "hw_slowdown"),
    (0x10, "sync_boost"),
    (0x20, "sw_thermal_slowdown"),
    (0x40, "hw_thermal_slowdown"),
    (0x80, "hw_power_brake_slowdown"),
    (0x100, "display_clock_setting"),
];

/// The names of the reasons set in `mask` (bits NVML adds later are named by their value).
pub fn throttle_reason_names(mask: u64) -> Vec<String> {
    let known: u64 = THROTTLE_REASONS.iter().map(|r| r.0).sum();
    let mut names: Vec<String> = THROTTLE_REASONS
        .iter()
        .filter(|(bit, _)| mask & bit != 0)
        .map(|(_, name)| name.to_string())
        .collect();
    if mask & !known != 0 {
        names.push(format!("other_0x{:x}", mask & !known));
    }
    names
}

/// Reasons that mean the measured work ran slower than the GPU can run it: a power or thermal
/// limit, or a hardware slowdown (idle, clock settings and sync boost are not about the work).
pub fn limits_clocks(reason: &str) -> bool {
    matches!(
        reason,
        "sw_power_cap"
            | "hw_slowdown"
            | "sw_thermal_slowdown"
            | "hw_thermal_slowdown"
            | "hw_power_brake_slowdown"
    )
}

/// Identity and state of a GPU at one moment (before and after each cell).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GpuState {
    pub name: String,
    pub uuid: String,
    pub driver: String,
    pub power_limit_w: Option<f64>,
    pub pstate: Option<String>,
    pub sm_clock_mhz: Option<u32>,
    pub memory_clock_mhz: Option<u32>,
    pub temperature_c: Option<u32>,
    /// Instant power at the moment of the snapshot.
    pub power_w: Option<f64>,
    pub energy_counter_mj: Option<u64>,
    /// The newest CUDA version the driver supports (NVML), e.g. `13.0`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cuda_driver_version: Option<String>,
    /// Persistence mode (the driver stays loaded between processes), read, never changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persistence_mode: Option<bool>,
    /// ECC on the GPU's memory, as currently in force.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ecc_enabled: Option<bool>,
}

pub trait EnergySensor {
    fn info(&self) -> SensorInfo;
    /// Called right after the device was synchronized, before the window's first loop.
    fn start_window(&mut self) -> Result<()>;
    /// Whether the window has seen enough counter updates to end; the protocol extends it until
    /// then (a window is never reported with too few ticks).
    fn window_ready(&self) -> bool {
        true
    }
    /// Called right after the device was synchronized, after the window's last loop.
    /// `None` when the sensor does not measure energy.
    fn stop_window(&mut self) -> Result<Option<WindowEnergy>>;
    /// Turns the background power sampler off (to measure what it costs) or back on.
    fn set_sampling(&mut self, _on: bool) {}
    /// Whether a background power sampler runs during windows (whose cost is then measured).
    fn samples_power(&self) -> bool {
        false
    }
    /// Whether the sensor (and the GPU behind it) still answers; asked after a failed cell, to
    /// tell a cell's own failure from a lost device.
    fn health_check(&self) -> Result<()> {
        Ok(())
    }
    /// Identity and state of the metered GPU, where there is one.
    fn gpu_state(&self) -> Option<GpuState> {
        None
    }
}

/// The sensor of machines where energy cannot be measured.
pub struct NoSensor {
    note: String,
}

impl NoSensor {
    pub fn new(note: impl Into<String>) -> Self {
        Self { note: note.into() }
    }
}

impl EnergySensor for NoSensor {
    fn info(&self) -> SensorInfo {
        SensorInfo {
            kind: "none".into(),
            measures_energy: false,
            note: self.note.clone(),
            metered: Vec::new(),
        }
    }

    fn start_window(&mut self) -> Result<()> {
        Ok(())
    }

    fn stop_window(&mut self) -> Result<Option<WindowEnergy>> {
        Ok(None)
    }
}

/// Test hook: `RUNNER_FAULT_INJECT=sensor-lost-after-windows:N` makes the sensor fail from window
/// N+1 on, and its health check with it, as an NVML whose GPU fell off the bus does. The resilience
/// tests drive the real (release) binary with it to show that a lost sensor fails the cell in
/// progress and ends the sweep with every finished cell kept. Never silent: the notice returned
/// with the sensor goes to the console and the manifest.
const FAULT_INJECT_VAR: &str = "RUNNER_FAULT_INJECT";

pub fn with_fault_injection(
    sensor: Box<dyn EnergySensor>,
) -> (Box<dyn EnergySensor>, Option<String>) {
    let Ok(spec) = std::env::var(FAULT_INJECT_VAR) else {
        return (sensor, None);
    };
    let notice = format!(
        "{FAULT_INJECT_VAR}={spec} is set: the sensor will fail on purpose (a test hook; unset it for real measurements)"
    );
    let windows = spec
        .strip_prefix("sensor-lost-after-windows:")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| {
            panic!("RUNNER_FAULT_INJECT={spec}: expected sensor-lost-after-windows:N")
        });
    let losing = LosingSensor {
        inner: sensor,
        windows_left: windows,
        lost: false,
    };
    (Box::new(losing), Some(notice))
}

struct LosingSensor {
    inner: Box<dyn EnergySensor>,
    windows_left: usize,
    lost: bool,
}

impl EnergySensor for LosingSensor {
    fn info(&self) -> SensorInfo {
        self.inner.info()
    }
    fn window_ready(&self) -> bool {
        self.inner.window_ready()
    }
    fn set_sampling(&mut self, on: bool) {
        self.inner.set_sampling(on)
    }
    fn samples_power(&self) -> bool {
        self.inner.samples_power()
    }
    fn gpu_state(&self) -> Option<GpuState> {
        self.inner.gpu_state()
    }
    fn start_window(&mut self) -> Result<()> {
        self.health_check()?;
        self.inner.start_window()
    }
    fn stop_window(&mut self) -> Result<Option<WindowEnergy>> {
        if self.windows_left == 0 {
            self.lost = true;
        }
        self.health_check()?;
        self.windows_left -= 1;
        self.inner.stop_window()
    }
    fn health_check(&self) -> Result<()> {
        anyhow::ensure!(
            !self.lost,
            "reading the sensor: GPU is lost (injected fault)"
        );
        Ok(())
    }
}

#[cfg(test)]
mod throttle_tests {
    use super::*;

    #[test]
    fn throttle_reasons_are_named_as_nvml_defines_them() {
        // nvml.h: SwPowerCap 0x4, HwSlowdown 0x8, SwThermalSlowdown 0x20.
        assert_eq!(throttle_reason_names(0), Vec::<String>::new());
        assert_eq!(throttle_reason_names(0x4), ["sw_power_cap"]);
        assert_eq!(
            throttle_reason_names(0x1 | 0x8 | 0x20),
            ["gpu_idle", "hw_slowdown", "sw_thermal_slowdown"]
        );
        assert_eq!(throttle_reason_names(0x400), ["other_0x400"]);
        assert!(limits_clocks("sw_power_cap") && !limits_clocks("gpu_idle"));
        // The same bits as nvml-wrapper's flags.
        use nvml_wrapper::bitmasks::device::ThrottleReasons as T;
        for (bit, flag) in [
            (0x1, T::GPU_IDLE),
            (0x2, T::APPLICATIONS_CLOCKS_SETTING),
            (0x4, T::SW_POWER_CAP),
            (0x8, T::HW_SLOWDOWN),
            (0x10, T::SYNC_BOOST),
            (0x20, T::SW_THERMAL_SLOWDOWN),
            (0x40, T::HW_THERMAL_SLOWDOWN),
            (0x80, T::HW_POWER_BRAKE_SLOWDOWN),
            (0x100, T::DISPLAY_CLOCK_SETTING),
        ] {
            assert_eq!(flag.bits(), bit);
        }
    }
}
