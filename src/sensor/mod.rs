//! Energy sensors. A sensor meters one window at a time: started and stopped around a
//! synchronized stretch of work. Without a supported sensor the run still completes, and every
//! record and report says energy was not measured and why.

pub mod energy;
pub mod nvml;

use std::time::Duration;

use anyhow::Result;
use serde::{Deserialize, Serialize};

use crate::config::{SensorKind, SensorSection};
use crate::device::DeviceInfo;
use crate::error::ConfigError;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SensorInfo {
    /// "none" (or, on GPUs, "nvml").
    pub kind: String,
    pub measures_energy: bool,
    /// For `none`: why energy is not measured (a clause, e.g. "the cells ran on the CPU ...").
    pub note: String,
    /// What the energy figures include, one domain each: [`GPU_BOARD`] for NVML's counter; a
    /// CPU sensor (RAPL) would add `cpu-package` and `dram`. Empty for sensors that measure no
    /// energy, and in records made before it was recorded (their energy is the GPU board's).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub metered: Vec<String>,
}

/// The energy domain of NVML's total-energy counter: the whole GPU board (the GPU, its memory
/// and the board's own circuitry), no CPU, host memory or the rest of the host.
pub const GPU_BOARD: &str = "gpu-board";

/// One power sample from a background sampler: seconds since the window started, watts.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PowerSample {
    pub t_s: f64,
    pub power_w: f64,
}

/// What a sensor measured over one window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WindowEnergy {
    /// Best estimate: counter delta plus tail correction.
    pub energy_j: f64,
    /// Energy-counter difference between the window's two reads.
    pub counter_delta_j: f64,
    /// Energy since the counter's last update before the end read (see sensor::nvml).
    pub tail_correction_j: f64,
    /// Updates of the energy counter seen inside the window (its resolution).
    pub counter_ticks: u64,
    /// The power trace integrated by the trapezoid rule, for comparison with the counter.
    pub trace_energy_j: Option<f64>,
    pub samples: Vec<PowerSample>,
    /// Why the GPU held its clocks back at any sample of the window (NVML's clock-throttle
    /// reasons, see [`throttle_reason_names`]); empty when none did, `None` where the sensor
    /// cannot tell.
    pub throttle_reasons: Option<Vec<String>>,
    /// The lowest and highest SM clock sampled in the window, MHz.
    pub sm_clock_mhz: Option<(u32, u32)>,
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
    /// Identity and state of the metered GPU, where there is one.
    /// Whether the sensor (and the GPU behind it) still answers; asked after a failed cell, to
    /// tell a cell's own failure from a lost device.
    fn health_check(&self) -> Result<()> {
        Ok(())
    }
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

/// Picks the sensor for `sensor.kind` on this device. `nvml` that cannot work is a
/// configuration error (exit 2) naming what is missing; `auto` falls back to no sensor and says why.
pub fn select(section: &SensorSection, device: &DeviceInfo) -> Result<Box<dyn EnergySensor>> {
    let interval = Duration::from_millis(section.sample_interval_ms);
    let on_gpu = device.backend == "cuda";
    match section.kind {
        SensorKind::None => Ok(Box::new(NoSensor::new(
            "sensor.kind = \"none\" in the experiment",
        ))),
        SensorKind::Nvml => {
            let nvml = nvml_wrapper::Nvml::init().map_err(|e| {
                ConfigError::new(format!(
                    "sensor.kind = \"nvml\" but NVML could not be loaded ({e}): install NVIDIA's driver (libnvidia-ml.so), or set sensor.kind = \"auto\" or \"none\""
                ))
            })?;
            let Some(uuid) = device.uuid.as_deref().filter(|_| on_gpu) else {
                return Err(ConfigError::new(format!(
                    "sensor.kind = \"nvml\" meters an NVIDIA GPU, but the cells run on the {} ({}): run on a GPU (device.backend = \"cuda\"), or set sensor.kind = \"auto\" or \"none\"",
                    device.backend, device.name
                ))
                .into());
            };
            let sensor = nvml::NvmlSensor::open(nvml, uuid, interval)
                .map_err(|e| ConfigError::new(format!("sensor.kind = \"nvml\": {e:#}")))?;
            Ok(Box::new(sensor))
        }
        SensorKind::Auto if !on_gpu => Ok(Box::new(NoSensor::new(
            "the cells ran on the CPU, and the runner meters energy only on NVIDIA GPUs (NVML)",
        ))),
        SensorKind::Auto => {
            let opened = nvml_wrapper::Nvml::init()
                .map_err(anyhow::Error::from)
                .and_then(|nvml| {
                    let uuid = device.uuid.as_deref().unwrap_or_default();
                    nvml::NvmlSensor::open(nvml, uuid, interval)
                });
            match opened {
                Ok(sensor) => Ok(Box::new(sensor)),
                Err(e) => Ok(Box::new(NoSensor::new(format!(
                    "NVML is not usable on this GPU ({e:#})"
                )))),
            }
        }
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
