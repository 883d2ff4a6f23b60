//! NVML energy sensor for NVIDIA GPUs.
//!
//! Energy of a window comes from the GPU's total-energy counter (mJ), read after a device
//! synchronize at both ends. The counter updates about every 100 ms, so:
//! - a window starts right after a counter update (the start read is then exact);
//! - the end read lags the end by up to one update; that lag is filled with the power of the last
//!   complete update interval (the tail correction, stored separately in every record);
//! - a window must span at least [`MIN_COUNTER_TICKS`] updates, else the protocol extends it.
//!
//! A background thread samples the instant-power field (`NVML_FI_DEV_POWER_INSTANT`; the plain
//! power reading is a 1-second average on Hopper) and the counter every `sample_interval_ms`: the
//! power trace, and the times of counter updates; with them the clock-throttle reasons and the SM
//! clock, so each window says whether a power cap or heat held the clocks back. Its cost to the
//! workload is measured per sweep.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use nvml_wrapper::enum_wrappers::device::{Clock, TemperatureSensor};
use nvml_wrapper::enums::device::SampleValue;
use nvml_wrapper::structs::device::FieldId;
use nvml_wrapper::Nvml;

use super::energy::{tail_correction_j, trapezoid_energy_j, MIN_COUNTER_TICKS};
use super::{EnergySensor, GpuState, PowerSample, SensorInfo, WindowEnergy};

/// `NVML_FI_DEV_POWER_INSTANT` (nvml.h): current instantaneous power, in milliwatts.
const FI_DEV_POWER_INSTANT: u32 = 186;

pub struct NvmlSensor {
    nvml: Arc<Nvml>,
    index: u32,
    interval: Duration,
    sampling: bool,
    active: Option<Active>,
}

struct Active {
    t0: Instant,
    e0_mj: u64,
    stop: Arc<AtomicBool>,
    ticks: Arc<AtomicU64>,
    sampler: Option<JoinHandle<Result<SamplerLog>>>,
}

#[derive(Default)]
struct SamplerLog {
    samples: Vec<PowerSample>,
    /// (seconds since window start when first seen, counter value in mJ) at each update.
    updates: Vec<(f64, u64)>,
    /// Every clock-throttle reason seen at any sample (NVML's bit mask, OR-ed); `None` when the
    /// GPU does not report them.
    throttle_mask: Option<u64>,
    /// The lowest and highest SM clock sampled, MHz.
    sm_clock_mhz: Option<(u32, u32)>,
}

impl NvmlSensor {
    /// Opens the GPU whose UUID is `uuid` (the CUDA device the cells run on).
    pub fn open(nvml: Nvml, uuid: &str, interval: Duration) -> Result<Self> {
        let index = {
            let device = nvml
                .device_by_uuid(uuid)
                .with_context(|| format!("NVML has no GPU with UUID {uuid}"))?;
            device.total_energy_consumption().context(
                "this GPU does not report its total energy counter (nvmlDeviceGetTotalEnergyConsumption; Volta or newer needed)",
            )?;
            read_instant_power_w(&device).context("this GPU does not report instant power")?;
            device.index()?
        };
        Ok(Self {
            nvml: Arc::new(nvml),
            index,
            interval,
            sampling: true,
            active: None,
        })
    }

    fn device(&self) -> Result<nvml_wrapper::Device<'_>> {
        Ok(self.nvml.device_by_index(self.index)?)
    }
}

fn read_instant_power_w(device: &nvml_wrapper::Device) -> Result<f64> {
    let values = device.field_values_for(&[FieldId(FI_DEV_POWER_INSTANT)])?;
    let sample = values
        .into_iter()
        .next()
        .context("NVML returned no field value")??;
    let milliwatts = match sample.value? {
        SampleValue::F64(v) => v,
        SampleValue::U32(v) => v as f64,
        SampleValue::U64(v) => v as f64,
        SampleValue::I64(v) => v as f64,
    };
    Ok(milliwatts / 1000.0)
}

impl EnergySensor for NvmlSensor {
    fn info(&self) -> SensorInfo {
        SensorInfo {
            kind: "nvml".into(),
            measures_energy: true,
            note: format!(
                "NVML total-energy counter (window energy, >= {MIN_COUNTER_TICKS} updates per window), instant power sampled every {} ms for traces",
                self.interval.as_millis()
            ),
            metered: vec![super::GPU_BOARD.to_string()],
        }
    }

    fn start_window(&mut self) -> Result<()> {
        let device = self.device()?;
        // Align the start with a counter update, so the start read is exact.
        let before = device.total_energy_consumption()?;
        let spin_start = Instant::now();
        let e0_mj = loop {
            let e = device.total_energy_consumption()?;
            if e != before {
                break e;
            }
            if spin_start.elapsed() > Duration::from_millis(500) {
                bail!(
                    "the GPU's energy counter did not update for 500 ms (expected every ~100 ms)"
                );
            }
            std::thread::sleep(Duration::from_micros(500));
        };
        let t0 = Instant::now();
        let stop = Arc::new(AtomicBool::new(false));
        let ticks = Arc::new(AtomicU64::new(0));
        let sampler = self.sampling.then(|| {
            let (nvml, index, interval) = (self.nvml.clone(), self.index, self.interval);
            let (stop, ticks) = (stop.clone(), ticks.clone());
            std::thread::Builder::new()
                .name("nvml-sampler".into())
                .spawn(move || sample(&nvml, index, interval, t0, e0_mj, &stop, &ticks))
                .expect("spawning the power sampler thread")
        });
        self.active = Some(Active {
            t0,
            e0_mj,
            stop,
            ticks,
            sampler,
        });
        Ok(())
    }

    fn window_ready(&self) -> bool {
        match &self.active {
            Some(a) if a.sampler.is_some() => a.ticks.load(Ordering::Relaxed) >= MIN_COUNTER_TICKS,
            _ => true,
        }
    }

    fn stop_window(&mut self) -> Result<Option<WindowEnergy>> {
        let active = self
            .active
            .take()
            .context("stop_window without start_window")?;
        let e1_mj = self.device()?.total_energy_consumption()?;
        let duration_s = active.t0.elapsed().as_secs_f64();
        active.stop.store(true, Ordering::Relaxed);
        let Some(handle) = active.sampler else {
            // Sampling off (the sampler-overhead check): latency only.
            return Ok(None);
        };
        let log = handle
            .join()
            .map_err(|_| anyhow::anyhow!("the power sampler thread panicked"))??;

        let counter_ticks = log.updates.len() as u64;
        if counter_ticks < MIN_COUNTER_TICKS {
            bail!(
                "the window saw {counter_ticks} energy-counter updates in {duration_s:.2} s (at least {MIN_COUNTER_TICKS} are needed): is the counter updating?"
            );
        }
        let counter_delta_j = (e1_mj - active.e0_mj) as f64 / 1000.0;
        // Tail: time since the counter's last update, filled with the last interval's power.
        let (t_last, e_last) = *log.updates.last().expect("ticks were counted");
        let (t_prev, e_prev) = if log.updates.len() >= 2 {
            log.updates[log.updates.len() - 2]
        } else {
            (0.0, active.e0_mj)
        };
        let last_interval_s = t_last - t_prev;
        let last_interval_j = (e_last - e_prev) as f64 / 1000.0;
        // The sampler sees an update on average half a sampling interval after it happened.
        let half_interval = self.interval.as_secs_f64() / 2.0;
        let lag_s = if e1_mj == e_last {
            duration_s - (t_last - half_interval)
        } else {
            0.0 // the final read caught an update the sampler had not seen: no lag to fill
        };
        let tail_j = tail_correction_j(last_interval_j, last_interval_s, lag_s.max(0.0));
        let trace_energy_j = trapezoid_energy_j(&log.samples, duration_s);
        let energy_j = counter_delta_j + tail_j;
        Ok(Some(WindowEnergy {
            energy_j,
            counter_delta_j,
            tail_correction_j: tail_j,
            counter_ticks: Some(counter_ticks),
            trace_energy_j,
            samples: log.samples,
            throttle_reasons: log.throttle_mask.map(super::throttle_reason_names),
            sm_clock_mhz: log.sm_clock_mhz,
            domains: [(super::GPU_BOARD.to_string(), energy_j)].into(),
        }))
    }

    fn set_sampling(&mut self, on: bool) {
        self.sampling = on;
    }

    fn samples_power(&self) -> bool {
        true
    }

    fn health_check(&self) -> Result<()> {
        let device = self.device()?;
        device
            .total_energy_consumption()
            .context("NVML: reading the energy counter")?;
        read_instant_power_w(&device)?;
        Ok(())
    }

    fn gpu_state(&self) -> Option<GpuState> {
        let device = self.device().ok()?;
        Some(GpuState {
            name: device.name().unwrap_or_default(),
            uuid: device.uuid().unwrap_or_default(),
            driver: self.nvml.sys_driver_version().unwrap_or_default(),
            power_limit_w: device
                .enforced_power_limit()
                .ok()
                .map(|mw| mw as f64 / 1000.0),
            // nvidia-smi's naming (P0 = maximum performance); 32 is NVML's "unknown".
            pstate: device
                .performance_state()
                .ok()
                .map(|p| format!("P{}", p.as_c())),
            sm_clock_mhz: device.clock_info(Clock::SM).ok(),
            memory_clock_mhz: device.clock_info(Clock::Memory).ok(),
            temperature_c: device.temperature(TemperatureSensor::Gpu).ok(),
            power_w: read_instant_power_w(&device).ok(),
            energy_counter_mj: device.total_energy_consumption().ok(),
            // NVML encodes 13.0 as 13000.
            cuda_driver_version: self
                .nvml
                .sys_cuda_driver_version()
                .ok()
                .map(|v| format!("{}.{}", v / 1000, (v % 1000) / 10)),
            persistence_mode: device.is_in_persistent_mode().ok(),
            ecc_enabled: device.is_ecc_enabled().ok().map(|e| e.currently_enabled),
        })
    }
}

fn sample(
    nvml: &Nvml,
    index: u32,
    interval: Duration,
    t0: Instant,
    e0_mj: u64,
    stop: &AtomicBool,
    ticks: &AtomicU64,
) -> Result<SamplerLog> {
    let device = nvml.device_by_index(index)?;
    let mut log = SamplerLog::default();
    let mut last = e0_mj;
    let mut next = t0;
    while !stop.load(Ordering::Relaxed) {
        let t = t0.elapsed().as_secs_f64();
        let power_w = read_instant_power_w(&device)?;
        log.samples.push(PowerSample { t_s: t, power_w });
        // Optional reads: a GPU that lacks them still meters energy, and says it could not tell.
        if let Ok(reasons) = device.current_throttle_reasons() {
            *log.throttle_mask.get_or_insert(0) |= reasons.bits();
        }
        if let Ok(mhz) = device.clock_info(Clock::SM) {
            let (lo, hi) = log.sm_clock_mhz.get_or_insert((mhz, mhz));
            *lo = (*lo).min(mhz);
            *hi = (*hi).max(mhz);
        }
        let e = device.total_energy_consumption()?;
        if e != last {
            log.updates.push((t, e));
            ticks.fetch_add(1, Ordering::Relaxed);
            last = e;
        }
        next += interval;
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        } else {
            next = now; // fell behind (slow NVML call): do not burst to catch up
        }
    }
    Ok(log)
}
