//! The measurement protocol: warm-up until latency is steady, a stabilization pause, then
//! `repeats` windows. A window starts and ends right after a device synchronize (the workload
//! synchronizes after every loop) and lasts until both `min_window_s` and `min_loops` are reached,
//! so slow CPU cells stay short and fast GPU cells run long enough for an energy counter.

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

    fn sleep_s(&self, seconds: f64) {
        if seconds > 0.0 {
            std::thread::sleep(Duration::from_secs_f64(seconds));
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
    /// Latency of each loop (one forward pass of one batch, synchronized), in milliseconds.
    pub loop_ms: Vec<f64>,
    /// Energy over the window, where a sensor measures it.
    pub energy_j: Option<f64>,
    pub counter_ticks: Option<u64>,
    pub num_power_samples: usize,
}

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
    clock.sleep_s(protocol.stabilize_s);

    let mut windows = Vec::with_capacity(protocol.repeats as usize);
    let mut trace = Vec::new();
    let mut first_start = None;
    for repeat in 0..protocol.repeats {
        progress(&format!("window {}/{}", repeat + 1, protocol.repeats));
        sensor.start_window()?;
        let start = clock.now_s();
        let origin = *first_start.get_or_insert(start);
        let mut loop_ms = Vec::new();
        loop {
            let t0 = clock.now_s();
            run_loop()?;
            let t1 = clock.now_s();
            loop_ms.push((t1 - t0) * 1e3);
            if window_complete(protocol, t1 - start, loop_ms.len()) {
                break;
            }
        }
        let duration_s = clock.now_s() - start;
        let energy = sensor.stop_window()?;
        let (energy_j, counter_ticks, num_power_samples) = match energy {
            Some(e) => {
                let offset = start - origin;
                trace.extend(e.samples.iter().map(|s| PowerSample {
                    t_s: s.t_s + offset,
                    power_w: s.power_w,
                }));
                (Some(e.energy_j), Some(e.counter_ticks), e.samples.len())
            }
            None => (None, None, 0),
        };
        windows.push(WindowRecord {
            loops: loop_ms.len() as u32,
            duration_s,
            loop_ms,
            energy_j,
            counter_ticks,
            num_power_samples,
        });
    }
    Ok(ProtocolOutcome {
        warmup,
        windows,
        trace,
    })
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
    loop {
        let t0 = clock.now_s();
        run_loop()?;
        let t1 = clock.now_s();
        loop_ms.push((t1 - t0) * 1e3);
        let elapsed = t1 - start;
        let long_enough =
            elapsed >= protocol.warmup_s && loop_ms.len() >= protocol.warmup_min_loops as usize;
        if long_enough && is_steady(&loop_ms, protocol.steady_tolerance) {
            return Ok(record(&loop_ms, elapsed, true));
        }
        if long_enough && elapsed >= protocol.warmup_max_s {
            return Ok(record(&loop_ms, elapsed, false));
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
pub mod tests {
    use super::*;
    use crate::sensor::{NoSensor, SensorInfo, WindowEnergy};
    use std::cell::Cell;

    /// A clock that only moves when told to.
    #[derive(Default)]
    pub struct FakeClock {
        pub now: Cell<f64>,
    }

    impl FakeClock {
        pub fn advance(&self, s: f64) {
            self.now.set(self.now.get() + s);
        }
    }

    impl Clock for FakeClock {
        fn now_s(&self) -> f64 {
            self.now.get()
        }
        fn sleep_s(&self, seconds: f64) {
            self.advance(seconds);
        }
    }

    fn protocol() -> ProtocolSection {
        ProtocolSection {
            warmup_s: 1.0,
            warmup_min_loops: 3,
            warmup_max_s: 10.0,
            steady_tolerance: 0.10,
            stabilize_s: 0.5,
            min_window_s: 2.0,
            min_loops: 5,
            repeats: 3,
            ..ProtocolSection::default()
        }
    }

    fn no_sensor() -> NoSensor {
        NoSensor::new("no sensor in tests")
    }

    #[test]
    fn fast_loops_run_until_the_window_is_long_enough() {
        let clock = FakeClock::default();
        let mut sensor = no_sensor();
        let mut run = || {
            clock.advance(0.010);
            Ok(())
        };
        let out = run_protocol(&protocol(), &mut sensor, &clock, &mut |_| {}, &mut run).unwrap();
        assert_eq!(out.windows.len(), 3);
        for w in &out.windows {
            // 2 s of 10 ms loops: 200 loops (floating point may need one more).
            assert!((200..=201).contains(&w.loops), "{} loops", w.loops);
            assert!(w.duration_s >= 2.0);
            assert!(w.energy_j.is_none());
        }
    }

    #[test]
    fn slow_loops_stop_at_min_loops_once_the_window_is_long_enough() {
        let clock = FakeClock::default();
        let mut sensor = no_sensor();
        let mut run = || {
            clock.advance(1.5);
            Ok(())
        };
        let out = run_protocol(&protocol(), &mut sensor, &clock, &mut |_| {}, &mut run).unwrap();
        assert!(out.windows.iter().all(|w| w.loops == 5));
    }

    #[test]
    fn warm_up_waits_for_steady_latency_and_flags_when_it_never_comes() {
        let clock = FakeClock::default();
        // First loop is slow (module load), then latency settles at 10 ms.
        let mut n = 0;
        let mut settling = || {
            n += 1;
            clock.advance(if n == 1 { 2.0 } else { 0.010 });
            Ok(())
        };
        let w = warm_up(&protocol(), &clock, &mut settling).unwrap();
        assert!(w.steady);
        // Three settled loops after the slow first one.
        assert_eq!(w.loops, 4);
        assert!((w.first_loop_ms - 2000.0).abs() < 1e-6);

        let clock = FakeClock::default();
        let mut k = 0u32;
        let mut noisy = || {
            k += 1;
            clock.advance(if k.is_multiple_of(2) { 0.010 } else { 0.030 });
            Ok(())
        };
        let w = warm_up(&protocol(), &clock, &mut noisy).unwrap();
        assert!(!w.steady);
        assert!(w.duration_s >= 10.0);
    }

    #[test]
    fn is_steady_needs_three_loops_within_tolerance() {
        assert!(!is_steady(&[10.0, 10.0], 0.1));
        assert!(is_steady(&[50.0, 10.0, 10.5, 10.9], 0.1));
        assert!(!is_steady(&[10.0, 10.0, 11.5], 0.1));
    }

    struct CountingSensor {
        windows: u32,
    }

    impl EnergySensor for CountingSensor {
        fn info(&self) -> SensorInfo {
            SensorInfo {
                kind: "test".into(),
                measures_energy: true,
                note: String::new(),
            }
        }
        fn start_window(&mut self) -> Result<()> {
            Ok(())
        }
        fn stop_window(&mut self) -> Result<Option<WindowEnergy>> {
            self.windows += 1;
            Ok(Some(WindowEnergy {
                energy_j: 100.0,
                counter_ticks: 20,
                samples: vec![PowerSample {
                    t_s: 0.5,
                    power_w: 50.0,
                }],
            }))
        }
    }

    #[test]
    fn sensor_readings_land_in_each_window_and_the_trace_shares_one_time_origin() {
        let clock = FakeClock::default();
        let mut sensor = CountingSensor { windows: 0 };
        let mut run = || {
            clock.advance(0.5);
            Ok(())
        };
        let out = run_protocol(&protocol(), &mut sensor, &clock, &mut |_| {}, &mut run).unwrap();
        assert_eq!(sensor.windows, 3);
        assert_eq!(out.windows[1].energy_j, Some(100.0));
        assert_eq!(out.windows[1].counter_ticks, Some(20));
        assert_eq!(out.trace.len(), 3);
        assert!(out.trace[0].t_s < out.trace[1].t_s && out.trace[1].t_s < out.trace[2].t_s);
    }
}
