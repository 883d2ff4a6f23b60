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
