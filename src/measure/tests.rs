//! The protocol's logic on a clock that only moves when told to, and sensors that say what
//! they were asked.

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
    // The slow first loop does not count as warm-up time: 1 s of 10 ms loops follows it.
    assert!((100..=102).contains(&w.loops), "{} loops", w.loops);
    assert!((w.first_loop_ms - 2000.0).abs() < 1e-6);
    assert!(w.duration_s >= 3.0 - 1e-9);

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
    assert!(
        w.duration_s < 10.1,
        "gives up at warmup_max_s: {}",
        w.duration_s
    );
}

#[test]
fn long_windows_keep_an_evenly_spaced_subsample_of_loop_latencies() {
    let (kept, stride) = subsample((0..10_000).map(f64::from).collect());
    assert_eq!(stride, 3);
    assert_eq!(kept.len(), 3334);
    assert_eq!(&kept[..3], &[0.0, 3.0, 6.0]);
    let (kept, stride) = subsample(vec![1.0; MAX_STORED_LOOPS]);
    assert_eq!((kept.len(), stride), (MAX_STORED_LOOPS, 1));
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
            metered: Vec::new(),
        }
    }
    fn start_window(&mut self) -> Result<()> {
        Ok(())
    }
    fn stop_window(&mut self) -> Result<Option<WindowEnergy>> {
        self.windows += 1;
        Ok(Some(WindowEnergy {
            energy_j: 100.0,
            counter_delta_j: 99.0,
            tail_correction_j: 1.0,
            trace_energy_j: Some(101.0),
            counter_ticks: Some(20),
            samples: vec![PowerSample {
                t_s: 0.5,
                power_w: 50.0,
            }],
            throttle_reasons: None,
            sm_clock_mhz: None,
            domains: [("gpu-board".to_string(), 100.0)].into(),
        }))
    }
}

/// A sensor whose counter needs `ready_after_s` of window time to tick often enough.
struct SlowCounter<'a> {
    clock: &'a FakeClock,
    ready_after_s: f64,
    started: f64,
}

impl EnergySensor for SlowCounter<'_> {
    fn info(&self) -> SensorInfo {
        SensorInfo {
            kind: "test".into(),
            measures_energy: true,
            note: String::new(),
            metered: Vec::new(),
        }
    }
    fn start_window(&mut self) -> Result<()> {
        self.started = self.clock.now_s();
        Ok(())
    }
    fn window_ready(&self) -> bool {
        self.clock.now_s() - self.started >= self.ready_after_s
    }
    fn stop_window(&mut self) -> Result<Option<WindowEnergy>> {
        Ok(None)
    }
}

#[test]
fn windows_are_extended_until_the_counter_has_ticked_enough() {
    let clock = FakeClock::default();
    let mut sensor = SlowCounter {
        clock: &clock,
        ready_after_s: 3.2,
        started: 0.0,
    };
    let mut run = || {
        clock.advance(0.1);
        Ok(())
    };
    let out = run_protocol(&protocol(), &mut sensor, &clock, &mut |_| {}, &mut run).unwrap();
    for w in &out.windows {
        assert!(
            w.duration_s >= 3.2 - 1e-9,
            "extended past min_window_s = 2: {}",
            w.duration_s
        );
        assert!(w.duration_s < 3.4);
    }
    // A counter that never gets there stops the extension after MAX_EXTENSION_S.
    let clock = FakeClock::default();
    let mut stuck = SlowCounter {
        clock: &clock,
        ready_after_s: 1e9,
        started: 0.0,
    };
    let mut run = || {
        clock.advance(0.5);
        Ok(())
    };
    let out = run_protocol(&protocol(), &mut stuck, &clock, &mut |_| {}, &mut run).unwrap();
    assert!(out.windows[0].duration_s <= 2.0 + MAX_EXTENSION_S + 0.5 + 1e-9);
}

#[test]
fn idle_baseline_is_energy_over_time_after_settling() {
    let clock = FakeClock::default();
    let mut sensor = CountingSensor { windows: 0 };
    let idle = measure_idle(&mut sensor, &clock, 2.0, 5.0)
        .unwrap()
        .unwrap();
    // The counting sensor reports 100 J per window: 100 J over 5 s = 20 W.
    assert_eq!(idle.settle_s, 2.0);
    assert!((idle.power_w - 20.0).abs() < 1e-9);
    assert!(
        (clock.now_s() - 7.0).abs() < 1e-9,
        "settled 2 s, measured 5 s"
    );
    let mut none = NoSensor::new("none");
    assert!(measure_idle(&mut none, &clock, 1.0, 1.0).unwrap().is_none());
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
