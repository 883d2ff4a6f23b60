//! The measurement protocol: warm-up until latency is steady, a stabilization pause, then
//! `repeats` windows. A window starts and ends right after a device synchronize (the workload
//! synchronizes after every loop) and lasts until both `min_window_s` and `min_loops` are reached,
//! so slow CPU cells stay short and fast GPU cells run long enough for an energy counter.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::Result;
use serde::{Deserialize, Serialize};

use crate::config::ProtocolSection;
use crate::sensor::{EnergySensor, PowerSample};

/// Time source, injectable so the protocol's logic is tested without sleeping.
pub trait Clock {
    /// Seconds since an arbitrary origin.
    fn now_s(&self) -> f64;
    fn sleep_s(&self, seconds: f64);
}

pub struct RealClock {
    origin: Instant,
}

impl Default for RealClock {
    fn default() -> Self {
        Self {
            origin: Instant::now(),
        }
    }
}

impl Clock for RealClock {
    fn now_s(&self) -> f64 {
        self.origin.elapsed().as_secs_f64()
    }

    /// Sleeps in short steps, waking early when a stop is asked for: a pause (cool-down,
    /// stabilization, idle settling) never delays Ctrl-C by more than 50 ms. The protocol then
    /// drops the cell it was in, so no record holds a shortened pause.
    fn sleep_s(&self, seconds: f64) {
        let deadline = Instant::now() + Duration::from_secs_f64(seconds.max(0.0));
        while !crate::interrupt::requested() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            std::thread::sleep(left.min(Duration::from_millis(50)));
        }
    }
}

/// What warm-up did: a cell whose latency never settled is flagged in the report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WarmupRecord {
    pub loops: u32,
    pub duration_s: f64,
    /// The first loop's latency: module loading, kernel compilation, caches.
    pub first_loop_ms: f64,
    pub steady: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WindowRecord {
    pub loops: u32,
    pub duration_s: f64,
    /// Latency of each loop (one forward pass of one batch, synchronized), in milliseconds; or of
    /// every `loop_ms_stride`-th loop when the window ran more than [`MAX_STORED_LOOPS`] loops
    /// (fast layers run ~10^5 loops a window). `loops` and `duration_s` always count every loop.
    pub loop_ms: Vec<f64>,
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub loop_ms_stride: u32,
    /// Energy over the window, where a sensor measures it (counter deltas + tail correction),
    /// over every domain the record's sensor metered (`sensor.metered`).
    pub energy_j: Option<f64>,
    pub counter_delta_j: Option<f64>,
    pub tail_correction_j: Option<f64>,
    /// `energy_j` by domain (`gpu-board`, `cpu-package`, `dram`), side by side over the same
    /// window: they add up to it. Empty in records made before host domains were metered (their
    /// energy is the GPU board's alone).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub domain_energy_j: BTreeMap<String, f64>,
    /// The GPU's power trace integrated by the trapezoid rule, to compare with its counter.
    pub trace_energy_j: Option<f64>,
    /// Updates of the GPU's energy counter in the window (RAPL's are not watched: `None`).
    pub counter_ticks: Option<u64>,
    pub num_power_samples: usize,
    /// NVML's clock-throttle reasons seen at any sample of the window (`sw_power_cap`,
    /// `hw_thermal_slowdown`, ...; empty: none). `None` where the sensor cannot tell, and in
    /// records made before they were recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub throttle_reasons: Option<Vec<String>>,
    /// The lowest and highest SM clock sampled during the window, MHz.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sm_clock_min_mhz: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sm_clock_max_mhz: Option<u32>,
    /// What the measuring thread (the one that ran the loops: on a GPU, the one that launched
    /// every kernel) did over the window. `None` where the system does not say (not Linux), and
    /// in records made before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<HostUsage>,
}

/// The measuring thread over one window: how much of it the thread was on a CPU, and how often
/// the kernel took the CPU from it. A loop bound by its host (eager launches) that is slow while
/// its thread was on the CPU the whole window ran slower code or a slower CPU, not a preempted
/// thread.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct HostUsage {
    /// CPU time of the thread over the window (user + system), seconds.
    pub thread_cpu_s: f64,
    /// Involuntary context switches of the thread over the window (preemptions).
    pub involuntary_switches: u64,
}

impl HostUsage {
    /// The calling thread's CPU time and involuntary switches so far.
    #[cfg(target_os = "linux")]
    pub fn now() -> Option<Self> {
        // SAFETY: both calls only write the zeroed structs passed to them for the calling thread.
        unsafe {
            let mut ts: libc::timespec = std::mem::zeroed();
            let mut ru: libc::rusage = std::mem::zeroed();
            if libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) != 0
                || libc::getrusage(libc::RUSAGE_THREAD, &mut ru) != 0
            {
                return None;
            }
            Some(Self {
                thread_cpu_s: ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9,
                involuntary_switches: ru.ru_nivcsw.max(0) as u64,
            })
        }
    }

    #[cfg(not(target_os = "linux"))]
    pub fn now() -> Option<Self> {
        None
    }

    /// From `start` to `self` (both of one thread).
    pub fn since(self, start: Self) -> Self {
        Self {
            thread_cpu_s: (self.thread_cpu_s - start.thread_cpu_s).max(0.0),
            involuntary_switches: self
                .involuntary_switches
                .saturating_sub(start.involuntary_switches),
        }
    }
}

/// Loop latencies kept per window; beyond this a systematic subsample is stored (the percentiles
/// of thousands of evenly spaced loops are within a fraction of a percent of the full set's).
pub const MAX_STORED_LOOPS: usize = 4096;

fn one() -> u32 {
    1
}

fn is_one(v: &u32) -> bool {
    *v == 1
}

impl WindowRecord {
    /// The energy the GPU's counter measured, which its power trace is compared with: the
    /// `gpu-board` domain's, or for records made before domains were recorded, `energy_j`.
    pub fn gpu_counter_energy_j(&self) -> Option<f64> {
        if self.domain_energy_j.is_empty() {
            self.energy_j
        } else {
            self.domain_energy_j.get(crate::sensor::GPU_BOARD).copied()
        }
    }

    /// The window's energy in `domain`: its own entry, or for records made before domains were
    /// recorded (GPU board only), `energy_j` when `domain` is the one the record metered.
    pub fn energy_in(&self, domain: &str, metered: &[String]) -> Option<f64> {
        if self.domain_energy_j.is_empty() {
            return self.energy_j.filter(|_| metered == [domain]);
        }
        self.domain_energy_j.get(domain).copied()
    }
}

/// Every `stride`-th latency, `stride` the smallest that keeps at most [`MAX_STORED_LOOPS`].
pub fn subsample(loop_ms: Vec<f64>) -> (Vec<f64>, u32) {
    let stride = loop_ms.len().div_ceil(MAX_STORED_LOOPS).max(1);
    if stride == 1 {
        return (loop_ms, 1);
    }
    (loop_ms.into_iter().step_by(stride).collect(), stride as u32)
}

/// How long a window may be extended past `min_window_s` while waiting for counter updates.
pub const MAX_EXTENSION_S: f64 = 10.0;

#[derive(Debug, Clone, PartialEq)]
pub struct ProtocolOutcome {
    pub warmup: WarmupRecord,
    pub windows: Vec<WindowRecord>,
    /// Power samples of every window, times relative to the first window's start.
    pub trace: Vec<PowerSample>,
}

/// Reports progress ("warm-up", "window 2/3") to whoever displays it.
pub type Progress<'a> = &'a mut dyn FnMut(&str);

/// Runs the protocol on `run_loop`, which runs one batch and returns once the device finished it.
pub fn run_protocol(
    protocol: &ProtocolSection,
    sensor: &mut dyn EnergySensor,
    clock: &dyn Clock,
    progress: Progress,
    run_loop: &mut dyn FnMut() -> Result<()>,
) -> Result<ProtocolOutcome> {
    progress("warm-up");
    let warmup = warm_up(protocol, clock, run_loop)?;
    crate::interrupt::check()?;
    clock.sleep_s(protocol.stabilize_s);

    let mut windows = Vec::with_capacity(protocol.repeats as usize);
    let mut trace = Vec::new();
    let mut first_start = None;
    for repeat in 0..protocol.repeats {
        progress(&format!("window {}/{}", repeat + 1, protocol.repeats));
        sensor.start_window()?;
        let host_start = HostUsage::now();
        let (start, loop_ms) = time_window(protocol, clock, run_loop, &|elapsed| {
            sensor.window_ready() || elapsed > protocol.min_window_s + MAX_EXTENSION_S
        })?;
        let host = host_start.zip(HostUsage::now()).map(|(a, b)| b.since(a));
        let origin = *first_start.get_or_insert(start);
        let duration_s = clock.now_s() - start;
        let energy = sensor.stop_window()?;
        let offset = start - origin;
        let loops = loop_ms.len() as u32;
        let (loop_ms, loop_ms_stride) = subsample(loop_ms);
        let mut record = WindowRecord {
            loops,
            duration_s,
            loop_ms,
            loop_ms_stride,
            energy_j: None,
            counter_delta_j: None,
            tail_correction_j: None,
            domain_energy_j: BTreeMap::new(),
            trace_energy_j: None,
            counter_ticks: None,
            num_power_samples: 0,
            throttle_reasons: None,
            sm_clock_min_mhz: None,
            sm_clock_max_mhz: None,
            host,
        };
        if let Some(e) = energy {
            trace.extend(e.samples.iter().map(|s| PowerSample {
                t_s: s.t_s + offset,
                power_w: s.power_w,
            }));
            record.energy_j = Some(e.energy_j);
            record.counter_delta_j = Some(e.counter_delta_j);
            record.tail_correction_j = Some(e.tail_correction_j);
            record.domain_energy_j = e.domains;
            record.trace_energy_j = e.trace_energy_j;
            record.counter_ticks = e.counter_ticks;
            record.num_power_samples = e.samples.len();
            record.throttle_reasons = e.throttle_reasons;
            record.sm_clock_min_mhz = e.sm_clock_mhz.map(|c| c.0);
            record.sm_clock_max_mhz = e.sm_clock_mhz.map(|c| c.1);
        }
        windows.push(record);
        // A stop asked for during this window takes effect now that it is complete.
        crate::interrupt::check()?;
    }
    Ok(ProtocolOutcome {
        warmup,
        windows,
        trace,
    })
}

/// Idle power of the device before the sweep, with the runner's CUDA context open: the baseline
/// for net energy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IdleBaseline {
    /// Quiet time before the measurement, to let power settle after start-up work.
    pub settle_s: f64,
    pub duration_s: f64,
    /// Over every metered domain.
    pub energy_j: f64,
    pub power_w: f64,
    /// Idle power of each metered domain (`gpu-board`, `cpu-package`, `dram`); empty in
    /// baselines made before domains were recorded (GPU board only).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub domain_power_w: BTreeMap<String, f64>,
    /// Updates of the GPU's energy counter (`None` without a GPU metered).
    pub counter_ticks: Option<u64>,
    pub num_power_samples: usize,
}

/// Lets the device settle, then meters `duration_s` of doing nothing. `None` without a sensor.
pub fn measure_idle(
    sensor: &mut dyn EnergySensor,
    clock: &dyn Clock,
    settle_s: f64,
    duration_s: f64,
) -> Result<Option<IdleBaseline>> {
    if !sensor.info().measures_energy {
        return Ok(None);
    }
    clock.sleep_s(settle_s);
    sensor.start_window()?;
    let start = clock.now_s();
    clock.sleep_s(duration_s);
    while !sensor.window_ready() && clock.now_s() - start < duration_s + MAX_EXTENSION_S {
        clock.sleep_s(0.05);
    }
    let elapsed = clock.now_s() - start;
    let Some(e) = sensor.stop_window()? else {
        return Ok(None);
    };
    Ok(Some(IdleBaseline {
        settle_s,
        duration_s: elapsed,
        energy_j: e.energy_j,
        power_w: e.energy_j / elapsed,
        domain_power_w: e
            .domains
            .iter()
            .map(|(d, j)| (d.clone(), j / elapsed))
            .collect(),
        counter_ticks: e.counter_ticks,
        num_power_samples: e.samples.len(),
    }))
}

/// What the background power sampler costs the workload: windows with and without it,
/// alternated (off, on, off, on) so that drift does not pose as overhead.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SamplerOverhead {
    pub cell_id: String,
    pub windows_each: u32,
    /// Median loop latency without / with the sampler thread.
    pub latency_off_ms: f64,
    pub latency_on_ms: f64,
    /// latency_on / latency_off - 1.
    pub overhead: f64,
}

pub fn measure_sampler_overhead(
    cell_id: &str,
    protocol: &ProtocolSection,
    sensor: &mut dyn EnergySensor,
    clock: &dyn Clock,
    run_loop: &mut dyn FnMut() -> Result<()>,
) -> Result<Option<SamplerOverhead>> {
    // Only a background sampler has a cost to measure (RAPL reads only at the edges).
    if !sensor.samples_power() {
        return Ok(None);
    }
    let (mut off, mut on) = (Vec::new(), Vec::new());
    for sampling in [false, true, false, true] {
        sensor.set_sampling(sampling);
        sensor.start_window()?;
        let (_, loop_ms) = time_window(protocol, clock, run_loop, &|_| true)?;
        // Latency is what is compared here; a window this short may not satisfy the counter.
        let _ = sensor.stop_window();
        if sampling {
            on.extend(loop_ms)
        } else {
            off.extend(loop_ms)
        }
    }
    sensor.set_sampling(true);
    let latency_off_ms = crate::stats::percentile(&off, 50.0);
    let latency_on_ms = crate::stats::percentile(&on, 50.0);
    Ok(Some(SamplerOverhead {
        cell_id: cell_id.to_string(),
        windows_each: 2,
        latency_off_ms,
        latency_on_ms,
        overhead: latency_on_ms / latency_off_ms - 1.0,
    }))
}

/// Times loops (each one synchronized by `run_loop`) until the window is complete and `may_end`
/// (given the elapsed seconds) agrees. Returns the window's start time and each loop's latency.
fn time_window(
    protocol: &ProtocolSection,
    clock: &dyn Clock,
    run_loop: &mut dyn FnMut() -> Result<()>,
    may_end: &dyn Fn(f64) -> bool,
) -> Result<(f64, Vec<f64>)> {
    let start = clock.now_s();
    let mut loop_ms = Vec::new();
    loop {
        let t0 = clock.now_s();
        run_loop()?;
        let t1 = clock.now_s();
        loop_ms.push((t1 - t0) * 1e3);
        if window_complete(protocol, t1 - start, loop_ms.len()) && may_end(t1 - start) {
            return Ok((start, loop_ms));
        }
    }
}

/// A window ends once it lasted `min_window_s` and ran `min_loops`.
pub fn window_complete(protocol: &ProtocolSection, elapsed_s: f64, loops: usize) -> bool {
    elapsed_s >= protocol.min_window_s && loops >= protocol.min_loops as usize
}

/// Steady = the last three loop latencies lie within `tolerance` of each other (max/min - 1).
pub fn is_steady(loop_ms: &[f64], tolerance: f64) -> bool {
    let Some(last) = loop_ms.len().checked_sub(3).map(|i| &loop_ms[i..]) else {
        return false;
    };
    let max = last.iter().copied().fold(f64::MIN, f64::max);
    let min = last.iter().copied().fold(f64::MAX, f64::min);
    min > 0.0 && max / min - 1.0 <= tolerance
}

fn warm_up(
    protocol: &ProtocolSection,
    clock: &dyn Clock,
    run_loop: &mut dyn FnMut() -> Result<()>,
) -> Result<WarmupRecord> {
    let start = clock.now_s();
    let mut loop_ms = Vec::new();
    // Warm-up time counts from the end of the first loop: that loop can be seconds of module
    // loading or JIT compilation (27 s on a fresh GPU machine), which warms nothing that the
    // measured loops depend on (clocks, caches, allocator).
    let mut first_end = None;
    loop {
        let t0 = clock.now_s();
        run_loop()?;
        let t1 = clock.now_s();
        loop_ms.push((t1 - t0) * 1e3);
        let warmed = t1 - *first_end.get_or_insert(t1);
        let long_enough =
            warmed >= protocol.warmup_s && loop_ms.len() >= protocol.warmup_min_loops as usize;
        if long_enough && is_steady(&loop_ms, protocol.steady_tolerance) {
            return Ok(record(&loop_ms, t1 - start, true));
        }
        if long_enough && warmed >= protocol.warmup_max_s {
            return Ok(record(&loop_ms, t1 - start, false));
        }
    }
}

fn record(loop_ms: &[f64], duration_s: f64, steady: bool) -> WarmupRecord {
    WarmupRecord {
        loops: loop_ms.len() as u32,
        duration_s,
        first_loop_ms: loop_ms[0],
        steady,
    }
}

#[cfg(test)]
pub mod tests;
