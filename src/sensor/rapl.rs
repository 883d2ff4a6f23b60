//! RAPL energy sensor: the CPU packages and their DRAM through the kernel's powercap counters
//! (see `powercap.rs` for which zones and why).
//!
//! A window's energy is each counter after minus before, read right at the window's edges (the
//! protocol synchronizes the device first). RAPL counters update about every millisecond, so
//! there is no alignment or tail to correct, but they wrap: every read adds the step since the
//! read before, a reading below the last one having wrapped once. A window longer than a quarter
//! of the fastest counter's wrap period at [`MAX_ZONE_POWER_W`] is split by a background thread
//! that reads every counter that often (for real counters every minute or more: nothing the
//! workload feels); reads further apart than one wrap period (a stalled process) fail the window
//! rather than report energy a second wrap may have hidden.
//!
//! Nothing here estimates: a zone that stops answering mid-run fails the window and the health
//! check, and the sweep ends with every finished cell kept (as a GPU lost mid-run does).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::powercap::{self, PowercapFs, Unavailable, Zone, MAX_ZONE_POWER_W};
use super::{EnergySensor, SensorInfo, WindowEnergy};

/// Slack on the plausibility check of one step: a counter updates about every millisecond, so a
/// step read microseconds after the one before may hold a whole update.
const UPDATE_SLACK_S: f64 = 0.05;

pub struct RaplSensor {
    fs: Arc<dyn PowercapFs>,
    root: PathBuf,
    zones: Vec<Zone>,
    /// How often a window's counters are read between its edges.
    poll: Duration,
    active: Option<Active>,
}

struct Active {
    shared: Arc<Mutex<Counters>>,
    stop: mpsc::Sender<()>,
    poller: JoinHandle<()>,
}

/// Every zone's energy since the window started, advanced by each read.
#[derive(Debug)]
pub(super) struct Counters {
    last_uj: Vec<u64>,
    total_uj: Vec<u128>,
    last_read: Instant,
    /// Set by the window's final read: the poller must not read after it.
    closed: bool,
    /// The first failure of a read between the edges, reported at the window's end.
    failure: Option<String>,
}

impl Counters {
    fn start(readings: Vec<u64>, at: Instant) -> Self {
        Self {
            total_uj: vec![0; readings.len()],
            last_uj: readings,
            last_read: at,
            closed: false,
            failure: None,
        }
    }

    /// Adds the step from the last reads to `readings`, taken at `at`; refuses a step that no
    /// CPU draws and reads too far apart to rule out an unseen wrap.
    pub(super) fn advance(&mut self, zones: &[Zone], readings: &[u64], at: Instant) -> Result<()> {
        let gap_s = at.duration_since(self.last_read).as_secs_f64();
        for (i, zone) in zones.iter().enumerate() {
            if gap_s > zone.wrap_period_s() {
                bail!(
                    "RAPL counter of {} was read {gap_s:.1} s after the read before, longer than it takes to wrap at {MAX_ZONE_POWER_W:.0} W ({:.1} s): a wrap may have gone unseen (was the process stopped?)",
                    zone.label(),
                    zone.wrap_period_s()
                );
            }
            let step = powercap::delta_uj(self.last_uj[i], readings[i], zone.range_uj);
            let most = MAX_ZONE_POWER_W * (gap_s + UPDATE_SLACK_S) * 1e6;
            if step as f64 > most {
                bail!(
                    "RAPL counter of {} moved {:.1} J in {gap_s:.3} s ({} -> {} µJ), more than any CPU package or DRAM draws: the counter is not trustworthy",
                    zone.label(),
                    step as f64 / 1e6,
                    self.last_uj[i],
                    readings[i]
                );
            }
            self.total_uj[i] += u128::from(step);
        }
        self.last_uj.copy_from_slice(readings);
        self.last_read = at;
        Ok(())
    }
}

impl RaplSensor {
    /// The RAPL zones under `root` (see [`powercap::discover`]), or why there are none.
    pub fn open(fs: Arc<dyn PowercapFs>, root: &Path) -> Result<Self, Unavailable> {
        let zones = powercap::discover(fs.as_ref(), root)?;
        let fastest = zones
            .iter()
            .map(Zone::wrap_period_s)
            .fold(f64::INFINITY, f64::min);
        Ok(Self {
            fs,
            root: root.to_path_buf(),
            zones,
            poll: Duration::from_secs_f64(fastest / 4.0),
            active: None,
        })
    }

    /// The energy domains this sensor meters, packages first.
    pub fn domains(&self) -> Vec<String> {
        let mut domains: Vec<String> = Vec::new();
        for z in &self.zones {
            if !domains.iter().any(|d| d == z.domain) {
                domains.push(z.domain.to_string());
            }
        }
        domains
    }

    fn read_all(&self) -> Result<Vec<u64>> {
        read_all(self.fs.as_ref(), &self.root, &self.zones)
    }
}

fn read_all(fs: &dyn PowercapFs, root: &Path, zones: &[Zone]) -> Result<Vec<u64>> {
    zones
        .iter()
        .map(|z| {
            powercap::read_counter(fs, root, z).map_err(|e| match e {
                Unavailable::Damaged { .. } | Unavailable::Unreadable { .. } => {
                    anyhow::anyhow!("{} stopped answering mid-run: {}", z.label(), e.line())
                }
                Unavailable::Absent { .. } => anyhow::anyhow!(e.line()),
            })
        })
        .collect()
}

impl EnergySensor for RaplSensor {
    fn info(&self) -> SensorInfo {
        let zones: Vec<String> = self.zones.iter().map(Zone::label).collect();
        SensorInfo {
            kind: "rapl".into(),
            measures_energy: true,
            note: format!(
                "RAPL through the kernel's powercap counters under {} ({}), read at each window's edges (updated about every ms; read every {:.1} s inside a window to follow wraparound)",
                self.root.display(),
                zones.join(", "),
                self.poll.as_secs_f64()
            ),
            metered: self.domains(),
        }
    }

    fn start_window(&mut self) -> Result<()> {
        anyhow::ensure!(self.active.is_none(), "start_window twice");
        let readings = self.read_all()?;
        let shared = Arc::new(Mutex::new(Counters::start(readings, Instant::now())));
        let (stop, stopped) = mpsc::channel::<()>();
        let (fs, root, zones, poll) = (
            self.fs.clone(),
            self.root.clone(),
            self.zones.clone(),
            self.poll,
        );
        let counters = shared.clone();
        let poller = std::thread::Builder::new()
            .name("rapl-poller".into())
            .spawn(move || loop {
                match stopped.recv_timeout(poll) {
                    Err(RecvTimeoutError::Timeout) => {}
                    _ => return,
                }
                let mut c = counters.lock().expect("RAPL counters lock");
                if c.closed || c.failure.is_some() {
                    return;
                }
                let read = read_all(fs.as_ref(), &root, &zones)
                    .and_then(|r| c.advance(&zones, &r, Instant::now()));
                if let Err(e) = read {
                    c.failure = Some(format!("{e:#}"));
                }
            })
            .context("spawning the RAPL poller thread")?;
        self.active = Some(Active {
            shared,
            stop,
            poller,
        });
        Ok(())
    }

    fn stop_window(&mut self) -> Result<Option<WindowEnergy>> {
        let active = self
            .active
            .take()
            .context("stop_window without start_window")?;
        // The final read, under the lock, so that no poll falls after the window's edge.
        let outcome = {
            let mut c = active.shared.lock().expect("RAPL counters lock");
            c.closed = true;
            let result = match c.failure.take() {
                Some(f) => Err(anyhow::anyhow!(f)),
                None => self
                    .read_all()
                    .and_then(|r| c.advance(&self.zones, &r, Instant::now())),
            };
            result.map(|()| c.total_uj.clone())
        };
        let _ = active.stop.send(());
        let _ = active.poller.join();
        let totals = outcome?;
        let mut domains: BTreeMap<String, f64> = BTreeMap::new();
        for (zone, uj) in self.zones.iter().zip(totals) {
            *domains.entry(zone.domain.to_string()).or_default() += uj as f64 / 1e6;
        }
        let energy_j: f64 = domains.values().sum();
        Ok(Some(WindowEnergy {
            energy_j,
            counter_delta_j: energy_j,
            tail_correction_j: 0.0,
            counter_ticks: None,
            trace_energy_j: None,
            samples: Vec::new(),
            throttle_reasons: None,
            sm_clock_mhz: None,
            domains,
        }))
    }

    fn health_check(&self) -> Result<()> {
        self.read_all().map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::super::powercap::fake::FakeFs;
    use super::super::{CPU_PACKAGE, DRAM};
    use super::*;

    const RANGE: u64 = 262_143_328_850;

    fn root() -> PathBuf {
        PathBuf::from("/fake/powercap")
    }

    fn energy(fs: &FakeFs, zone: &str, uj: u64) {
        fs.set(&root().join(zone).join("energy_uj"), uj);
    }

    fn sensor(fs: &Arc<FakeFs>) -> RaplSensor {
        RaplSensor::open(fs.clone(), &root()).unwrap()
    }

    #[test]
    fn two_sockets_add_up_per_domain_side_by_side() {
        let fs = Arc::new(FakeFs::sockets(&root(), 2, RANGE, 1_000_000));
        let mut s = sensor(&fs);
        let info = s.info();
        assert_eq!(info.metered, [CPU_PACKAGE, DRAM]);
        assert!(info.note.contains("intel-rapl:1:0 (dram)"), "{}", info.note);
        s.start_window().unwrap();
        energy(&fs, "intel-rapl:0", 1_000_000 + 30_000_000); // 30 J
        energy(&fs, "intel-rapl:1", 1_000_000 + 20_500_000); // 20.5 J
        energy(&fs, "intel-rapl:0:0", 1_000_000 + 4_000_000); // 4 J
        energy(&fs, "intel-rapl:1:0", 1_000_000 + 3_000_000); // 3 J
        let w = s.stop_window().unwrap().unwrap();
        assert!((w.domains[CPU_PACKAGE] - 50.5).abs() < 1e-9);
        assert!((w.domains[DRAM] - 7.0).abs() < 1e-9);
        assert!((w.energy_j - 57.5).abs() < 1e-9);
        assert_eq!(w.counter_ticks, None);
        // The next window starts from the counters as they are then.
        s.start_window().unwrap();
        energy(&fs, "intel-rapl:0", 1_000_000 + 31_000_000);
        let w = s.stop_window().unwrap().unwrap();
        assert!((w.domains[CPU_PACKAGE] - 1.0).abs() < 1e-9);
        assert_eq!(w.domains[DRAM], 0.0);
    }

    #[test]
    fn a_wrap_inside_the_window_counts_the_range_and_one() {
        let fs = Arc::new(FakeFs::sockets(&root(), 1, RANGE, RANGE - 2_000_000));
        let mut s = sensor(&fs);
        s.start_window().unwrap();
        energy(&fs, "intel-rapl:0", 3_000_000); // 2 J to the top, 1 µJ to zero, 3 J past it
        energy(&fs, "intel-rapl:0:0", RANGE - 1_000_000); // 1 J, no wrap
        let w = s.stop_window().unwrap().unwrap();
        assert!((w.domains[CPU_PACKAGE] - 5.000_001).abs() < 1e-9, "{w:?}");
        assert!((w.domains[DRAM] - 1.0).abs() < 1e-9);
    }

    #[test]
    fn a_window_longer_than_a_wrap_is_split_by_reads_between_its_edges() {
        // A counter of 400 J range wraps in 0.4 s at 1 kW: read every 0.1 s. The package draws
        // 800 W (a wrap every 0.5 s), DRAM 40 W, for 1.2 s: two wraps, both seen.
        let range = 400_000_000;
        let fs = Arc::new(FakeFs::sockets(&root(), 1, range, 0));
        fs.live(&root().join("intel-rapl:0/energy_uj"), 800.0, range);
        fs.live(&root().join("intel-rapl:0:0/energy_uj"), 40.0, range);
        let mut s = sensor(&fs);
        assert!((s.poll.as_secs_f64() - 0.1).abs() < 1e-6);
        let t0 = Instant::now();
        s.start_window().unwrap();
        std::thread::sleep(Duration::from_millis(1200));
        let w = s.stop_window().unwrap().unwrap();
        let elapsed = t0.elapsed().as_secs_f64();
        for (domain, watts) in [(CPU_PACKAGE, 800.0), (DRAM, 40.0)] {
            let power = w.domains[domain] / elapsed;
            assert!(
                (power - watts).abs() < 0.03 * watts,
                "{domain}: {power} W against {watts} W"
            );
        }
    }

    #[test]
    fn reads_too_far_apart_or_a_jump_no_cpu_makes_are_refused() {
        let zones = vec![Zone {
            id: "intel-rapl:0".into(),
            name: "package-0".into(),
            domain: CPU_PACKAGE,
            energy_path: root().join("intel-rapl:0/energy_uj"),
            range_uj: 100_000_000, // wraps in 0.1 s at 1 kW
        }];
        let t0 = Instant::now();
        let mut c = Counters::start(vec![0], t0);
        c.advance(&zones, &[1_000_000], t0 + Duration::from_millis(20))
            .unwrap();
        let e = c
            .advance(&zones, &[2_000_000], t0 + Duration::from_millis(200))
            .unwrap_err();
        assert!(
            format!("{e}").contains("a wrap may have gone unseen"),
            "{e}"
        );
        let mut c = Counters::start(vec![0], t0);
        // 90 J in 10 ms: 9 kW.
        let e = c
            .advance(&zones, &[90_000_000], t0 + Duration::from_millis(10))
            .unwrap_err();
        assert!(format!("{e}").contains("more than any CPU package"), "{e}");
    }

    #[test]
    fn a_zone_that_disappears_mid_run_fails_the_window_and_the_health_check() {
        let fs = Arc::new(FakeFs::sockets(&root(), 2, RANGE, 0));
        let mut s = sensor(&fs);
        s.start_window().unwrap();
        fs.remove_dir(&root().join("intel-rapl:1"));
        let e = s.stop_window().unwrap_err();
        let text = format!("{e:#}");
        assert!(
            text.contains("intel-rapl:1 (package-1) stopped answering mid-run"),
            "{text}"
        );
        assert!(s.health_check().is_err());
        // A later window is refused too, never metered over what is left.
        assert!(s.start_window().is_err());
    }

    #[test]
    fn nonsense_mid_run_fails_the_window_by_name() {
        for text in ["-1", "garbage", "1e9", "999999999999999999999"] {
            let fs = Arc::new(FakeFs::sockets(&root(), 1, RANGE, 0));
            let mut s = sensor(&fs);
            s.start_window().unwrap();
            fs.write(&root().join("intel-rapl:0:0/energy_uj"), text);
            let e = format!("{:#}", s.stop_window().unwrap_err());
            assert!(e.contains("intel-rapl:0:0 (dram) stopped answering"), "{e}");
        }
        // A value inside the range, but a jump of 200 kJ in microseconds.
        let fs = Arc::new(FakeFs::sockets(&root(), 1, RANGE, 0));
        let mut s = sensor(&fs);
        s.start_window().unwrap();
        energy(&fs, "intel-rapl:0", 200_000_000_000);
        let e = format!("{:#}", s.stop_window().unwrap_err());
        assert!(e.contains("more than any CPU package or DRAM draws"), "{e}");
    }
}
