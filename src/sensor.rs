//! Energy sensors. A sensor meters one window at a time: started and stopped around a
//! synchronized stretch of work. Without a supported sensor the run still completes, and every
//! record and report says energy was not measured and why.

use anyhow::Result;
use serde::{Deserialize, Serialize};

use crate::config::{SensorKind, SensorSection};
use crate::device::DeviceInfo;

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
    pub energy_j: f64,
    /// Updates of the energy counter seen inside the window (its resolution).
    pub counter_ticks: u64,
    pub samples: Vec<PowerSample>,
}

pub trait EnergySensor {
    fn info(&self) -> SensorInfo;
    /// Called right after the device was synchronized, before the window's first loop.
    fn start_window(&mut self) -> Result<()>;
    /// Called right after the device was synchronized, after the window's last loop.
    /// `None` when the sensor does not measure energy.
    fn stop_window(&mut self) -> Result<Option<WindowEnergy>>;
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

/// Picks the sensor for `sensor.kind` on this device.
pub fn select(section: &SensorSection, device: &DeviceInfo) -> Box<dyn EnergySensor> {
    let note = match (section.kind, device.backend.as_str()) {
        (SensorKind::None, _) => "sensor.kind = \"none\" in the experiment".to_string(),
        (_, "cpu") => {
            "the cells ran on the CPU, and the runner meters energy only on NVIDIA GPUs (NVML)"
                .to_string()
        }
        _ => "this build of the runner has no NVML sensor".to_string(),
    };
    Box::new(NoSensor::new(note))
}
