//! The kernel's powercap tree as RAPL fills it (`/sys/class/powercap`, or `sensor.powercap_root`):
//! which zones meter the CPU packages and their DRAM, and reading their counters, bounded and
//! checked. Every way the tree can fail a user (absent, not readable, values that are no counter)
//! is a [`Unavailable`] whose one line says which and what to do.
//!
//! Zones read: `intel-rapl:N` whose `name` is `package-N` (one per socket; AMD CPUs fill the same
//! tree since Linux 5.11) and `intel-rapl:N:M` whose `name` is `dram`. The package's other
//! subzones (`core`, `uncore`) and `psys` are inside a package or span it, so adding them would
//! count energy twice; `intel-rapl-mmio:*` is the same package counter through another door.
//! The kernel converts each domain's hardware unit to µJ (DRAM has its own unit on many Xeons:
//! reading the MSRs with the package's unit is the classic "100x off"), so `energy_uj` is used as
//! the kernel gives it.

use std::io::{self, Read};
use std::path::{Path, PathBuf};

use super::{CPU_PACKAGE, DRAM};

/// The most a CPU package or its DRAM can plausibly draw (the largest server CPUs are rated
/// ~500 W; a socket's DRAM well under that). The counter's wrap period is reckoned at this power,
/// and a counter that moved faster is refused as damaged, never reported.
pub const MAX_ZONE_POWER_W: f64 = 1000.0;

/// A zone's counter must take at least this long to wrap at [`MAX_ZONE_POWER_W`] (real counters
/// take minutes: 262 kJ on Intel packages, 65 kJ on some DRAM domains): a quarter of it is how
/// often the counters are read inside a window.
pub const MIN_WRAP_PERIOD_S: f64 = 0.02;

/// The one door to the files, so tests can answer as a kernel does even when they run as root
/// (who reads a mode-000 file anyway): permission denied, a file that vanishes.
pub trait PowercapFs: Send + Sync {
    /// A small file's text.
    fn read(&self, path: &Path) -> io::Result<String>;
    /// The names of a folder's entries.
    fn list(&self, dir: &Path) -> io::Result<Vec<String>>;
}

/// The real filesystem. A sysfs attribute is a few bytes: at most 256 are read, and anything that
/// is not a regular file (a FIFO would block forever) is refused before it is opened.
pub struct SysFs;

impl PowercapFs for SysFs {
    fn read(&self, path: &Path) -> io::Result<String> {
        if !std::fs::metadata(path)?.is_file() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a regular file",
            ));
        }
        let mut text = String::new();
        std::fs::File::open(path)?
            .take(256)
            .read_to_string(&mut text)?;
        Ok(text)
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        std::fs::read_dir(dir)?
            .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
            .collect()
    }
}

/// One counter the sensor reads.
#[derive(Debug, Clone, PartialEq)]
pub struct Zone {
    /// `intel-rapl:0`, `intel-rapl:0:0`.
    pub id: String,
    /// The kernel's name: `package-0`, `dram`.
    pub name: String,
    /// [`CPU_PACKAGE`] or [`DRAM`].
    pub domain: &'static str,
    pub energy_path: PathBuf,
    /// `max_energy_range_uj`: the counter runs 0..=range, then starts again at 0.
    pub range_uj: u64,
}

impl Zone {
    /// How long the counter takes to wrap at [`MAX_ZONE_POWER_W`].
    pub fn wrap_period_s(&self) -> f64 {
        (self.range_uj as f64 + 1.0) / 1e6 / MAX_ZONE_POWER_W
    }

    /// `intel-rapl:0 (package-0)`.
    pub fn label(&self) -> String {
        format!("{} ({})", self.id, self.name)
    }
}

/// Why RAPL cannot be metered here: not present, not readable, or reading nonsense.
#[derive(Debug, Clone, PartialEq)]
pub enum Unavailable {
    /// No powercap tree, or one without RAPL zones (virtual machines, containers, CI).
    Absent { root: PathBuf, why: String },
    /// The counters exist but this process may not read them (root-only since Linux 5.10).
    Unreadable { root: PathBuf, path: PathBuf },
    /// A file that should hold a counter holds something else, or cannot be read.
    Damaged { path: PathBuf, why: String },
}

impl Unavailable {
    /// One line: which, and what to do.
    pub fn line(&self) -> String {
        match self {
            Unavailable::Absent { root, why } => format!(
                "RAPL is not present: {why}, so CPU package and DRAM energy cannot be metered on this machine (virtual machines and most containers have no RAPL; on bare metal load the driver with `modprobe intel_rapl_msr`, AMD CPUs need Linux 5.11 or newer; sensor.powercap_root = {:?})",
                root.display().to_string()
            ),
            Unavailable::Unreadable { root, path } => {
                let r = root.display();
                format!(
                    "RAPL is not readable: {}: permission denied (since Linux 5.10 energy_uj is readable by root only). Grant read access with `sudo chmod a+r {r}/intel-rapl:*/energy_uj {r}/intel-rapl:*/max_energy_range_uj` (until reboot; the README has a udev rule that keeps it), or run the runner as root or with CAP_DAC_READ_SEARCH",
                    path.display()
                )
            }
            Unavailable::Damaged { path, why } => format!(
                "RAPL counter {} {why}: it is not a counter the runner can trust, so CPU package and DRAM energy are not metered (check the powercap tree, or sensor.powercap_root)",
                path.display()
            ),
        }
    }
}

fn io_failure(root: &Path, path: &Path, e: &io::Error) -> Unavailable {
    match e.kind() {
        io::ErrorKind::PermissionDenied => Unavailable::Unreadable {
            root: root.to_path_buf(),
            path: path.to_path_buf(),
        },
        _ => Unavailable::Damaged {
            path: path.to_path_buf(),
            why: format!("could not be read ({e})"),
        },
    }
}

/// A file's text as a whole number of µJ: digits only (a sign, a fraction, text or a number past
/// u64 is no counter reading).
pub fn parse_uj(text: &str) -> Result<u64, String> {
    let t = text.trim();
    if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
        let shown: String = t.chars().take(40).collect();
        return Err(format!("holds {shown:?}, not a whole number of µJ"));
    }
    t.parse::<u64>()
        .map_err(|_| format!("holds {t}, past the largest counter value"))
}

/// Reads one counter: a value within the zone's range.
pub fn read_counter(fs: &dyn PowercapFs, root: &Path, zone: &Zone) -> Result<u64, Unavailable> {
    let text = fs
        .read(&zone.energy_path)
        .map_err(|e| io_failure(root, &zone.energy_path, &e))?;
    let damaged = |why: String| Unavailable::Damaged {
        path: zone.energy_path.clone(),
        why,
    };
    let value = parse_uj(&text).map_err(damaged)?;
    if value > zone.range_uj {
        return Err(damaged(format!(
            "reads {value} µJ, beyond its own max_energy_range_uj ({})",
            zone.range_uj
        )));
    }
    Ok(value)
}

/// The package and DRAM zones under `root`, each read once (so a tree that cannot be read is
/// refused here, before anything is measured), packages first, in socket order.
pub fn discover(fs: &dyn PowercapFs, root: &Path) -> Result<Vec<Zone>, Unavailable> {
    let absent = |why: String| Unavailable::Absent {
        root: root.to_path_buf(),
        why,
    };
    let entries = fs.list(root).map_err(|e| {
        absent(match e.kind() {
            io::ErrorKind::NotFound => format!("{} does not exist", root.display()),
            _ => format!("{} cannot be listed ({e})", root.display()),
        })
    })?;
    let mut ids: Vec<(Vec<u32>, String)> = entries
        .into_iter()
        .filter_map(|name| {
            let numbers: Vec<u32> = name
                .strip_prefix("intel-rapl:")?
                .split(':')
                .map(|n| n.parse().ok())
                .collect::<Option<_>>()?;
            (1..=2).contains(&numbers.len()).then_some((numbers, name))
        })
        .collect();
    ids.sort();
    let mut zones = Vec::new();
    for (numbers, id) in ids {
        let dir = root.join(&id);
        let name_path = dir.join("name");
        let name = fs
            .read(&name_path)
            .map_err(|e| io_failure(root, &name_path, &e))?
            .trim()
            .to_string();
        let domain = match (numbers.len(), name.as_str()) {
            (1, n) if n.starts_with("package-") => CPU_PACKAGE,
            (2, "dram") => DRAM,
            _ => continue, // core, uncore, psys: inside or around a package
        };
        let range_path = dir.join("max_energy_range_uj");
        let range_text = fs
            .read(&range_path)
            .map_err(|e| io_failure(root, &range_path, &e))?;
        let range_uj = parse_uj(&range_text).map_err(|why| Unavailable::Damaged {
            path: range_path.clone(),
            why,
        })?;
        let zone = Zone {
            id,
            name,
            domain,
            energy_path: dir.join("energy_uj"),
            range_uj,
        };
        if zone.wrap_period_s() < MIN_WRAP_PERIOD_S {
            return Err(Unavailable::Damaged {
                path: range_path,
                why: format!(
                    "gives a range of {range_uj} µJ, which a CPU at {MAX_ZONE_POWER_W:.0} W would wrap in {:.1} ms: too fast to follow (real counters wrap in minutes)",
                    zone.wrap_period_s() * 1e3
                ),
            });
        }
        read_counter(fs, root, &zone)?;
        zones.push(zone);
    }
    if !zones.iter().any(|z| z.domain == CPU_PACKAGE) {
        return Err(absent(format!(
            "{} has no RAPL package zone (intel-rapl:N named package-N)",
            root.display()
        )));
    }
    Ok(zones)
}

/// Energy between two reads of a counter that runs 0..=range_uj and then starts again at 0: a
/// reading below the one before means the counter wrapped (once: reads come faster than a wrap).
pub fn delta_uj(before: u64, after: u64, range_uj: u64) -> u64 {
    if after >= before {
        after - before
    } else {
        (range_uj - before) + after + 1
    }
}

#[cfg(test)]
pub mod fake {
    //! An in-memory powercap tree for tests: files by path, each with a value, an error, or a
    //! live counter that advances with the clock as the kernel's does (so no writer thread has to
    //! keep up with the reader).

    use std::collections::BTreeMap;
    use std::io;
    use std::path::{Path, PathBuf};
    use std::sync::Mutex;
    use std::time::Instant;

    use super::PowercapFs;

    enum Entry {
        Text(String),
        Fails(io::ErrorKind),
        /// `watts` since `since`, wrapping after `range_uj`.
        Live {
            since: Instant,
            watts: f64,
            range_uj: u64,
        },
    }

    #[derive(Default)]
    pub struct FakeFs {
        files: Mutex<BTreeMap<PathBuf, Entry>>,
    }

    impl FakeFs {
        /// A tree of `sockets` packages, each with a DRAM subzone, counters at `start_uj`.
        pub fn sockets(root: &Path, sockets: u32, range_uj: u64, start_uj: u64) -> Self {
            let fs = FakeFs::default();
            for s in 0..sockets {
                fs.zone(
                    root,
                    &format!("intel-rapl:{s}"),
                    &format!("package-{s}"),
                    range_uj,
                );
                fs.zone(root, &format!("intel-rapl:{s}:0"), "dram", range_uj);
                fs.set(&root.join(format!("intel-rapl:{s}/energy_uj")), start_uj);
                fs.set(&root.join(format!("intel-rapl:{s}:0/energy_uj")), start_uj);
            }
            fs
        }

        pub fn zone(&self, root: &Path, id: &str, name: &str, range_uj: u64) {
            let dir = root.join(id);
            self.write(&dir.join("name"), &format!("{name}\n"));
            self.write(&dir.join("max_energy_range_uj"), &format!("{range_uj}\n"));
            self.write(&dir.join("energy_uj"), "0\n");
        }

        pub fn write(&self, path: &Path, text: &str) {
            let mut files = self.files.lock().unwrap();
            files.insert(path.to_path_buf(), Entry::Text(text.to_string()));
        }

        /// A counter at 0 now, drawing `watts` from here on.
        pub fn live(&self, path: &Path, watts: f64, range_uj: u64) {
            let mut files = self.files.lock().unwrap();
            let since = Instant::now();
            files.insert(
                path.to_path_buf(),
                Entry::Live {
                    since,
                    watts,
                    range_uj,
                },
            );
        }

        pub fn set(&self, path: &Path, uj: u64) {
            self.write(path, &format!("{uj}\n"));
        }

        pub fn fail(&self, path: &Path, kind: io::ErrorKind) {
            let mut files = self.files.lock().unwrap();
            files.insert(path.to_path_buf(), Entry::Fails(kind));
        }

        /// Removes a zone's folder, as a hot-unplugged or unloaded driver does.
        pub fn remove_dir(&self, dir: &Path) {
            let mut files = self.files.lock().unwrap();
            files.retain(|p, _| !p.starts_with(dir));
        }
    }

    impl PowercapFs for FakeFs {
        fn read(&self, path: &Path) -> io::Result<String> {
            let files = self.files.lock().unwrap();
            match files.get(path) {
                Some(Entry::Text(text)) => Ok(text.clone()),
                Some(Entry::Fails(kind)) => Err(io::Error::from(*kind)),
                Some(Entry::Live {
                    since,
                    watts,
                    range_uj,
                }) => {
                    let uj = (watts * since.elapsed().as_secs_f64() * 1e6) as u64;
                    Ok(format!("{}\n", uj % (range_uj + 1)))
                }
                None => Err(io::Error::from(io::ErrorKind::NotFound)),
            }
        }

        fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
            let files = self.files.lock().unwrap();
            let mut names: Vec<String> = files
                .keys()
                .filter_map(|p| p.strip_prefix(dir).ok())
                .filter_map(|rest| rest.components().next())
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            names.dedup();
            if names.is_empty() {
                return Err(io::Error::from(io::ErrorKind::NotFound));
            }
            Ok(names)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fake::FakeFs;
    use super::*;

    const RANGE: u64 = 262_143_328_850; // an Intel package's max_energy_range_uj

    fn root() -> PathBuf {
        PathBuf::from("/fake/powercap")
    }

    #[test]
    fn two_sockets_give_two_packages_and_two_dram_zones_and_skip_what_overlaps() {
        let fs = FakeFs::sockets(&root(), 2, RANGE, 1000);
        fs.zone(&root(), "intel-rapl:0:1", "core", RANGE);
        fs.zone(&root(), "intel-rapl:2", "psys", RANGE);
        fs.zone(&root(), "intel-rapl-mmio:0", "package-0", RANGE);
        fs.write(&root().join("intel-rapl/enabled"), "1\n");
        let zones = discover(&fs, &root()).unwrap();
        let got: Vec<(String, &str)> = zones.iter().map(|z| (z.label(), z.domain)).collect();
        assert_eq!(
            got,
            [
                ("intel-rapl:0 (package-0)".to_string(), CPU_PACKAGE),
                ("intel-rapl:0:0 (dram)".to_string(), DRAM),
                ("intel-rapl:1 (package-1)".to_string(), CPU_PACKAGE),
                ("intel-rapl:1:0 (dram)".to_string(), DRAM),
            ]
        );
        assert_eq!(zones[0].range_uj, RANGE);
        // 262 kJ at 1 kW: four and a half minutes between wraps.
        assert!((zones[0].wrap_period_s() - 262.143_328_851).abs() < 1e-6);
    }

    #[test]
    fn a_missing_tree_or_one_without_packages_is_absent_and_says_what_to_do() {
        let empty = FakeFs::default();
        let e = discover(&empty, &root()).unwrap_err();
        assert!(matches!(e, Unavailable::Absent { .. }));
        let line = e.line();
        assert!(
            line.starts_with("RAPL is not present: /fake/powercap does not exist"),
            "{line}"
        );
        assert!(line.contains("modprobe intel_rapl_msr"), "{line}");
        assert!(!line.contains('\n'));
        let only_psys = FakeFs::default();
        only_psys.zone(&root(), "intel-rapl:0", "psys", RANGE);
        let line = discover(&only_psys, &root()).unwrap_err().line();
        assert!(line.contains("has no RAPL package zone"), "{line}");
    }

    #[test]
    fn permission_denied_is_not_readable_with_the_chmod_and_the_capability() {
        // As a Linux >= 5.10 kernel answers a non-root reader, whoever runs the test.
        let fs = FakeFs::sockets(&root(), 1, RANGE, 5);
        fs.fail(
            &root().join("intel-rapl:0/energy_uj"),
            io::ErrorKind::PermissionDenied,
        );
        let e = discover(&fs, &root()).unwrap_err();
        assert!(matches!(e, Unavailable::Unreadable { .. }), "{e:?}");
        let line = e.line();
        assert!(
            line.starts_with(
                "RAPL is not readable: /fake/powercap/intel-rapl:0/energy_uj: permission denied"
            ),
            "{line}"
        );
        assert!(
            line.contains("sudo chmod a+r /fake/powercap/intel-rapl:*/energy_uj"),
            "{line}"
        );
        assert!(
            line.contains("udev rule") && line.contains("CAP_DAC_READ_SEARCH"),
            "{line}"
        );
    }

    #[test]
    fn nonsense_values_are_refused_by_file_never_read_as_energy() {
        for (text, expected) in [
            ("-5\n", "holds \"-5\", not a whole number"),
            ("12.5\n", "not a whole number"),
            ("lots\n", "holds \"lots\""),
            ("\n", "holds \"\""),
            (
                "99999999999999999999999\n",
                "past the largest counter value",
            ),
            ("262143328851\n", "beyond its own max_energy_range_uj"),
        ] {
            let fs = FakeFs::sockets(&root(), 1, RANGE, 5);
            fs.write(&root().join("intel-rapl:0:0/energy_uj"), text);
            let e = discover(&fs, &root()).unwrap_err();
            let line = e.line();
            assert!(matches!(e, Unavailable::Damaged { .. }), "{text:?}: {line}");
            assert!(line.contains("intel-rapl:0:0/energy_uj"), "{line}");
            assert!(line.contains(expected), "{text:?}: {line}");
        }
        // A range that would wrap in microseconds.
        let fs = FakeFs::sockets(&root(), 1, 1000, 5);
        let line = discover(&fs, &root()).unwrap_err().line();
        assert!(line.contains("too fast to follow"), "{line}");
        let fs = FakeFs::sockets(&root(), 1, RANGE, 5);
        fs.write(&root().join("intel-rapl:0/max_energy_range_uj"), "many");
        let line = discover(&fs, &root()).unwrap_err().line();
        assert!(
            line.contains("max_energy_range_uj holds \"many\""),
            "{line}"
        );
    }

    #[test]
    fn a_counter_that_wraps_adds_the_range_and_one() {
        assert_eq!(delta_uj(100, 350, RANGE), 250);
        // 50 µJ before the top, wraps, then 70 past zero: 50 + 1 (top to zero) + 70.
        assert_eq!(delta_uj(RANGE - 50, 70, RANGE), 121);
        assert_eq!(delta_uj(RANGE, 0, RANGE), 1);
        assert_eq!(delta_uj(7, 7, RANGE), 0);
    }
}
