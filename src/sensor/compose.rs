//! Several sensors metering the same window side by side: NVML's GPU board with RAPL's CPU
//! packages and DRAM. They start in order and stop in reverse, so each window nests inside the
//! one before: NVML first waits for its counter's update and then the host counters are read at
//! once; at the end the host counters are read before NVML's final read and sampler join. Both
//! edges of every part lie within microseconds of the synchronize. A window is metered by every
//! part or reported by none: a part that fails fails the window, never a window over fewer
//! domains.

use anyhow::{bail, Result};

use super::{EnergySensor, GpuState, SensorInfo, WindowEnergy};

pub struct Composite {
    parts: Vec<Box<dyn EnergySensor>>,
}

impl Composite {
    pub fn new(parts: Vec<Box<dyn EnergySensor>>) -> Self {
        Self { parts }
    }
}

impl EnergySensor for Composite {
    fn info(&self) -> SensorInfo {
        let infos: Vec<SensorInfo> = self.parts.iter().map(|p| p.info()).collect();
        SensorInfo {
            kind: infos
                .iter()
                .map(|i| i.kind.as_str())
                .collect::<Vec<_>>()
                .join("+"),
            measures_energy: infos.iter().all(|i| i.measures_energy),
            note: infos
                .iter()
                .map(|i| i.note.as_str())
                .collect::<Vec<_>>()
                .join("; "),
            metered: infos.iter().flat_map(|i| i.metered.clone()).collect(),
        }
    }

    fn start_window(&mut self) -> Result<()> {
        for i in 0..self.parts.len() {
            if let Err(e) = self.parts[i].start_window() {
                // Close the windows already opened (their threads), and report the failure.
                for p in self.parts[..i].iter_mut().rev() {
                    let _ = p.stop_window();
                }
                return Err(e);
            }
        }
        Ok(())
    }

    fn window_ready(&self) -> bool {
        self.parts.iter().all(|p| p.window_ready())
    }

    fn stop_window(&mut self) -> Result<Option<WindowEnergy>> {
        // Every part is stopped (joining its threads) before any failure is reported.
        let results: Vec<Result<Option<WindowEnergy>>> = self
            .parts
            .iter_mut()
            .rev()
            .map(|p| p.stop_window())
            .collect();
        let mut windows = Vec::new();
        for r in results.into_iter().rev() {
            match r? {
                Some(w) => windows.push(w),
                None => return Ok(None),
            }
        }
        merge(windows).map(Some)
    }

    fn set_sampling(&mut self, on: bool) {
        for p in &mut self.parts {
            p.set_sampling(on);
        }
    }

    fn samples_power(&self) -> bool {
        self.parts.iter().any(|p| p.samples_power())
    }

    fn health_check(&self) -> Result<()> {
        self.parts.iter().try_for_each(|p| p.health_check())
    }

    fn gpu_state(&self) -> Option<GpuState> {
        self.parts.iter().find_map(|p| p.gpu_state())
    }
}

/// One window from its parts' windows: energies and counter deltas add up, domain by domain; the
/// GPU's counter resolution, trace, clocks and throttle reasons come from the part that has them.
fn merge(windows: Vec<WindowEnergy>) -> Result<WindowEnergy> {
    let mut merged = WindowEnergy {
        energy_j: 0.0,
        counter_delta_j: 0.0,
        tail_correction_j: 0.0,
        counter_ticks: None,
        trace_energy_j: None,
        samples: Vec::new(),
        throttle_reasons: None,
        sm_clock_mhz: None,
        domains: Default::default(),
    };
    for w in windows {
        merged.energy_j += w.energy_j;
        merged.counter_delta_j += w.counter_delta_j;
        merged.tail_correction_j += w.tail_correction_j;
        merged.counter_ticks = merged.counter_ticks.or(w.counter_ticks);
        merged.trace_energy_j = merged.trace_energy_j.or(w.trace_energy_j);
        merged.samples.extend(w.samples);
        merged.throttle_reasons = merged.throttle_reasons.or(w.throttle_reasons);
        merged.sm_clock_mhz = merged.sm_clock_mhz.or(w.sm_clock_mhz);
        for (domain, j) in w.domains {
            if merged.domains.insert(domain.clone(), j).is_some() {
                bail!("two sensors metered the same domain {domain}: its energy would count twice");
            }
        }
    }
    Ok(merged)
}

#[cfg(test)]
pub(crate) mod tests {
    use std::cell::RefCell;
    use std::rc::Rc;
    use std::sync::Arc;

    use super::*;
    use crate::sensor::powercap::fake::FakeFs;
    use crate::sensor::rapl::RaplSensor;
    use crate::sensor::{PowerSample, CPU_PACKAGE, DRAM, GPU_BOARD};

    /// A stand-in for NVML: a GPU board drawing `power_w` over windows whose length the test
    /// sets, with a counter of 100 ms ticks, a trace and a clock; it logs its calls.
    pub(crate) struct FakeGpu {
        pub power_w: f64,
        pub window_s: f64,
        pub log: Rc<RefCell<Vec<String>>>,
        pub fail_stop: bool,
    }

    impl EnergySensor for FakeGpu {
        fn info(&self) -> SensorInfo {
            SensorInfo {
                kind: "nvml".into(),
                measures_energy: true,
                note: "fake GPU".into(),
                metered: vec![GPU_BOARD.into()],
            }
        }
        fn start_window(&mut self) -> Result<()> {
            self.log.borrow_mut().push("gpu start".into());
            Ok(())
        }
        fn stop_window(&mut self) -> Result<Option<WindowEnergy>> {
            self.log.borrow_mut().push("gpu stop".into());
            if self.fail_stop {
                bail!("GPU is lost");
            }
            let e = self.power_w * self.window_s;
            Ok(Some(WindowEnergy {
                energy_j: e,
                counter_delta_j: e - 1.0,
                tail_correction_j: 1.0,
                counter_ticks: Some((self.window_s * 10.0) as u64),
                trace_energy_j: Some(e * 1.02),
                samples: vec![PowerSample {
                    t_s: 0.5,
                    power_w: self.power_w,
                }],
                throttle_reasons: Some(Vec::new()),
                sm_clock_mhz: Some((1980, 1980)),
                domains: [(GPU_BOARD.to_string(), e)].into(),
            }))
        }
        fn samples_power(&self) -> bool {
            true
        }
    }

    fn gpu(log: &Rc<RefCell<Vec<String>>>, fail_stop: bool) -> Box<dyn EnergySensor> {
        Box::new(FakeGpu {
            power_w: 300.0,
            window_s: 2.0,
            log: log.clone(),
            fail_stop,
        })
    }

    /// Logs the order of a part's edges around a real RAPL sensor on a fake tree.
    struct Logged(Box<dyn EnergySensor>, Rc<RefCell<Vec<String>>>);

    impl EnergySensor for Logged {
        fn info(&self) -> SensorInfo {
            self.0.info()
        }
        fn start_window(&mut self) -> Result<()> {
            self.1.borrow_mut().push("host start".into());
            self.0.start_window()
        }
        fn stop_window(&mut self) -> Result<Option<WindowEnergy>> {
            self.1.borrow_mut().push("host stop".into());
            self.0.stop_window()
        }
    }

    fn root() -> std::path::PathBuf {
        "/fake/powercap".into()
    }

    #[test]
    fn gpu_and_host_domains_side_by_side_in_one_window_nested_edges() {
        let log = Rc::new(RefCell::new(Vec::new()));
        let fs = Arc::new(FakeFs::sockets(&root(), 2, 262_143_328_850, 0));
        let rapl = RaplSensor::open(fs.clone(), &root()).unwrap();
        let mut both = Composite::new(vec![
            gpu(&log, false),
            Box::new(Logged(Box::new(rapl), log.clone())),
        ]);
        let info = both.info();
        assert_eq!(info.kind, "nvml+rapl");
        assert_eq!(info.metered, [GPU_BOARD, CPU_PACKAGE, DRAM]);
        assert!(both.samples_power());
        both.start_window().unwrap();
        for (zone, uj) in [
            ("intel-rapl:0", 9_000_000),
            ("intel-rapl:1", 7_000_000),
            ("intel-rapl:0:0", 1_000_000),
            ("intel-rapl:1:0", 800_000),
        ] {
            fs.set(&root().join(zone).join("energy_uj"), uj);
        }
        let w = both.stop_window().unwrap().unwrap();
        assert_eq!(
            *log.borrow(),
            ["gpu start", "host start", "host stop", "gpu stop"]
        );
        assert!((w.domains[GPU_BOARD] - 600.0).abs() < 1e-9);
        assert!((w.domains[CPU_PACKAGE] - 16.0).abs() < 1e-9);
        assert!((w.domains[DRAM] - 1.8).abs() < 1e-9);
        assert!((w.energy_j - 617.8).abs() < 1e-9);
        // energy = counter deltas + the GPU's tail; the GPU's resolution, trace and clocks kept.
        assert!((w.counter_delta_j + w.tail_correction_j - w.energy_j).abs() < 1e-9);
        assert_eq!(w.counter_ticks, Some(20));
        assert_eq!(w.trace_energy_j, Some(612.0));
        assert_eq!(w.sm_clock_mhz, Some((1980, 1980)));
    }

    #[test]
    fn a_part_that_fails_fails_the_window_after_every_part_stopped() {
        let log = Rc::new(RefCell::new(Vec::new()));
        let fs = Arc::new(FakeFs::sockets(&root(), 1, 262_143_328_850, 0));
        let rapl = RaplSensor::open(fs.clone(), &root()).unwrap();
        let mut both = Composite::new(vec![gpu(&log, true), Box::new(rapl)]);
        both.start_window().unwrap();
        let e = both.stop_window().unwrap_err();
        assert!(format!("{e}").contains("GPU is lost"));
        // The host part was stopped too: a new window starts cleanly.
        let mut both = Composite::new(vec![
            gpu(&log, false),
            Box::new(RaplSensor::open(fs.clone(), &root()).unwrap()),
        ]);
        both.start_window().unwrap();
        fs.remove_dir(&root().join("intel-rapl:0:0"));
        let e = format!("{:#}", both.stop_window().unwrap_err());
        assert!(e.contains("intel-rapl:0:0 (dram) stopped answering"), "{e}");
        assert_eq!(log.borrow().last().map(String::as_str), Some("gpu stop"));
    }
}
