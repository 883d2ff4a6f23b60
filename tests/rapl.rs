//! CPU package and DRAM energy through RAPL, end to end: the real binary on the CPU, metering a
//! powercap tree the test writes (`sensor.powercap_root`) whose counters a thread advances as
//! the kernel's do, wraparound included. Without RAPL, or with one that cannot be read or reads
//! nonsense, a run says which in one line and measures no energy; `sensor.kind = "rapl"` there is
//! a configuration error before anything is measured.

mod common;
use common::*;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The counter's range: 2 kJ wraps in 2 s at the 1 kW the runner plans for (read every 0.5 s
/// inside a window), and in 100 s at the package's 20 W.
const RANGE_UJ: u64 = 2_000_000_000;
const PACKAGE_W: f64 = 20.0;
const DRAM_W: f64 = 3.0;

/// A powercap tree of two sockets, each a package and its DRAM, whose `energy_uj` files a thread
/// rewrites every millisecond (atomically: a reader sees the old value or the new one), from
/// counters that start near the top so they wrap during the run.
struct FakePowercap {
    root: PathBuf,
    /// Zones (folder names) the writer no longer touches.
    removed: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    writer: Option<JoinHandle<()>>,
}

fn zones() -> Vec<(&'static str, &'static str, f64, u64)> {
    // id, name, watts, start: socket 0 wraps after 0.5 s, socket 1 after 2.5 s.
    vec![
        (
            "intel-rapl:0",
            "package-0",
            PACKAGE_W,
            RANGE_UJ - 10_000_000,
        ),
        ("intel-rapl:0:0", "dram", DRAM_W, RANGE_UJ - 1_000_000),
        (
            "intel-rapl:1",
            "package-1",
            PACKAGE_W,
            RANGE_UJ - 50_000_000,
        ),
        ("intel-rapl:1:0", "dram", DRAM_W, 0),
    ]
}

impl FakePowercap {
    fn new(root: &Path) -> Self {
        for (id, name, _, start) in zones() {
            let dir = root.join(id);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("name"), format!("{name}\n")).unwrap();
            std::fs::write(dir.join("max_energy_range_uj"), format!("{RANGE_UJ}\n")).unwrap();
            std::fs::write(dir.join("energy_uj"), format!("{start}\n")).unwrap();
        }
        // What real trees hold besides: a core subzone and psys, which the runner must not add.
        let core = root.join("intel-rapl:0:1");
        std::fs::create_dir_all(&core).unwrap();
        std::fs::write(core.join("name"), "core\n").unwrap();
        std::fs::write(core.join("max_energy_range_uj"), format!("{RANGE_UJ}\n")).unwrap();
        std::fs::write(core.join("energy_uj"), "5\n").unwrap();
        let removed: Arc<Mutex<Vec<String>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let writer = {
            let (root, removed, stop) = (root.to_path_buf(), removed.clone(), stop.clone());
            std::thread::spawn(move || {
                let t0 = Instant::now();
                while !stop.load(Ordering::Relaxed) {
                    let t = t0.elapsed().as_secs_f64();
                    for (id, _, watts, start) in zones() {
                        if removed.lock().unwrap().iter().any(|r| r == id) {
                            continue;
                        }
                        let uj = (start + (watts * t * 1e6) as u64) % (RANGE_UJ + 1);
                        let dir = root.join(id);
                        let tmp = dir.join("energy_uj.tmp");
                        // A zone removed meanwhile fails these writes: it is gone, as intended.
                        if std::fs::write(&tmp, format!("{uj}\n")).is_ok() {
                            let _ = std::fs::rename(&tmp, dir.join("energy_uj"));
                        }
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
            })
        };
        Self {
            root: root.to_path_buf(),
            removed,
            stop,
            writer: Some(writer),
        }
    }

    /// Removes a zone, as a driver unloaded mid-run does.
    fn remove(&self, id: &str) {
        self.removed.lock().unwrap().push(id.to_string());
        std::fs::remove_dir_all(self.root.join(id)).unwrap();
    }
}

impl Drop for FakePowercap {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
    }
}

fn experiment(sensor: &str, batches: &str) -> String {
    format!(
        r#"[experiment]
name = "rapl"
{}
[protocol]
warmup_s = 0.05
warmup_min_loops = 3
warmup_max_s = 1.0
stabilize_s = 0.0
min_window_s = 0.3
min_loops = 3
repeats = 4
idle_settle_s = 0.1
idle_baseline_s = 0.6

[sensor]
{sensor}

[matrix]
precision = ["fp32"]
batch_size = {batches}
seq_len = [16]
"#,
        common_tables()
    )
}

fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn read_text(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// summary.csv as rows of column name -> value (no field here holds a comma).
fn summary(run: &Path) -> Vec<std::collections::BTreeMap<String, String>> {
    let csv = read_text(&run.join("summary.csv"));
    let mut lines = csv.lines();
    let header: Vec<String> = lines.next().unwrap().split(',').map(String::from).collect();
    lines
        .map(|l| {
            header
                .iter()
                .cloned()
                .zip(l.split(',').map(String::from))
                .collect()
        })
        .collect()
}

fn within(got: f64, expected: f64, tolerance: f64) -> bool {
    (got - expected).abs() <= tolerance * expected
}

#[test]
fn a_cpu_run_meters_both_sockets_packages_and_dram_through_a_powercap_tree() {
    let f = Fixture::new("");
    let tree = FakePowercap::new(&f.dir.path().join("powercap"));
    std::fs::write(
        &f.file,
        experiment(
            &format!("powercap_root = {:?}", tree.root.display().to_string()),
            "[2, 4]",
        ),
    )
    .unwrap();
    let run = f.dir.path().join("run");
    let out = f
        .runner()
        .args(["exp.toml", "--out"])
        .arg(&run)
        .output()
        .unwrap();
    let stderr = stderr_of(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("energy not measured"), "{stderr}");
    assert!(
        stderr.contains("runner: energy metered: cpu-package + dram (rapl)"),
        "{stderr}"
    );
    // The idle baseline, domain by domain: both sockets' packages, both DRAMs.
    let idle_line = stderr
        .lines()
        .find(|l| l.starts_with("runner: idle power "))
        .unwrap_or_else(|| panic!("no idle power line: {stderr}"));
    assert!(
        idle_line.contains("cpu-package ") && idle_line.contains("dram "),
        "{idle_line}"
    );
    assert!(!idle_line.contains("GPU counter"), "{idle_line}");

    let manifest = read_json(&run.join("manifest.json"));
    assert_eq!(manifest["sensor"]["kind"], "rapl", "{}", manifest["sensor"]);
    assert_eq!(
        manifest["sensor"]["metered"],
        serde_json::json!(["cpu-package", "dram"])
    );
    let note = manifest["sensor"]["note"].as_str().unwrap();
    assert!(
        note.contains("intel-rapl:1 (package-1)") && !note.contains("core"),
        "{note}"
    );
    let idle = &manifest["sessions"][0]["idle_baseline"];
    let idle_package = idle["domain_power_w"]["cpu-package"].as_f64().unwrap();
    assert!(within(idle_package, 2.0 * PACKAGE_W, 0.25), "{idle}");
    assert!(idle["counter_ticks"].is_null(), "{idle}");

    for cell in manifest["plan"].as_array().unwrap() {
        let id = cell["id"].as_str().unwrap();
        let record = read_json(&run.join("cells").join(format!("{id}.json")));
        assert_eq!(record["status"], "ok");
        assert_eq!(record["sensor"]["kind"], "rapl");
        assert!(record["idle_domain_power_w"]["dram"].as_f64().unwrap() > 0.0);
        for w in record["windows"].as_array().unwrap() {
            let total = w["energy_j"].as_f64().unwrap();
            let package = w["domain_energy_j"]["cpu-package"].as_f64().unwrap();
            let dram = w["domain_energy_j"]["dram"].as_f64().unwrap();
            assert!(package > 0.0 && dram > 0.0, "{w}");
            assert!((package + dram - total).abs() < 1e-9, "{w}");
            assert!(
                w["counter_ticks"].is_null(),
                "RAPL has no ticks to count: {w}"
            );
            assert!(w.get("trace_energy_j").is_none_or(|t| t.is_null()), "{w}");
        }
    }

    // summary.csv: what was metered, and each domain beside the total.
    let rows = summary(&run);
    assert_eq!(rows.len(), 2);
    for row in &rows {
        assert_eq!(row["metered_domains"], "cpu-package+dram");
        let number = |key: &str| -> f64 {
            row[key]
                .parse()
                .unwrap_or_else(|_| panic!("{key} = {:?}", row[key]))
        };
        assert!(number("energy_per_inference_mj") > 0.0);
        assert!(number("energy_cpu_package_per_inference_mj") > 0.0);
        // The counters run at a fixed power, busy or not: gross is all idle, net about none.
        let package_w = number("avg_power_cpu_package_w");
        assert!(within(package_w, 2.0 * PACKAGE_W, 0.25), "{row:?}");
        assert!(
            within(number("avg_power_dram_w"), 2.0 * DRAM_W, 0.25),
            "{row:?}"
        );
        assert!(
            within(number("avg_power_w"), 2.0 * (PACKAGE_W + DRAM_W), 0.25),
            "{row:?}"
        );
        let net = number("energy_net_cpu_package_per_inference_mj");
        let gross = number("energy_cpu_package_per_inference_mj");
        assert!(net.abs() < 0.35 * gross, "net {net} against gross {gross}");
        assert_eq!(
            row["energy_gpu_board_per_inference_mj"], "",
            "no GPU metered"
        );
        assert_eq!(row["counter_ticks"], "");
    }

    // The reports say what the energy covers, from what was metered.
    let md = read_text(&run.join("report.md"));
    assert!(
        md.contains("| Energy scope | the CPU package (RAPL, every socket) + the host's DRAM (RAPL); not included: the rest of the host"),
        "{md}"
    );
    assert!(md.contains("### By energy domain"), "{md}");
    assert!(
        md.contains("CPU package and DRAM energy comes from RAPL's counters"),
        "{md}"
    );
    assert!(!md.contains("Energy was not measured"));
    assert!(!md.contains("total-energy counter (updated every ~100 ms)"));
    let html = read_text(&run.join("report.html"));
    assert!(html.contains("<h3>By energy domain</h3>"));

    // The stored records render the same reports again, without the tree.
    drop(tree);
    let before = std::fs::read(run.join("report.md")).unwrap();
    let out = f.runner().arg("report").arg(&run).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    assert!(std::fs::read(run.join("report.md")).unwrap() == before);
}

#[test]
fn a_socket_that_disappears_mid_run_fails_its_cell_and_ends_the_sweep_keeping_the_rest() {
    let f = Fixture::new("");
    let tree = FakePowercap::new(&f.dir.path().join("powercap"));
    std::fs::write(
        &f.file,
        experiment(
            &format!(
                "kind = \"rapl\"\npowercap_root = {:?}",
                tree.root.display().to_string()
            ),
            "[2, 4, 8]",
        ),
    )
    .unwrap();
    let run = f.dir.path().join("run");
    let child = std::process::Command::new(assert_cmd::cargo::cargo_bin("runner"))
        .current_dir(f.dir.path())
        .args(["exp.toml", "--out"])
        .arg(&run)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Once the first cell's record is written, socket 1's zone goes away.
    let cells = run.join("cells");
    let deadline = Instant::now() + Duration::from_secs(120);
    while std::fs::read_dir(&cells).map_or(0, |d| d.count()) == 0 {
        assert!(Instant::now() < deadline, "no record after 120 s");
        std::thread::sleep(Duration::from_millis(5));
    }
    tree.remove("intel-rapl:1");
    let out = child.wait_with_output().unwrap();
    let stderr = stderr_of(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("intel-rapl:1 (package-1) stopped answering mid-run"),
        "{stderr}"
    );
    assert!(
        stderr.contains("the device or its sensor stopped answering"),
        "{stderr}"
    );
    let records: Vec<serde_json::Value> = std::fs::read_dir(&cells)
        .unwrap()
        .map(|e| read_json(&e.unwrap().path()))
        .collect();
    let ok: Vec<&serde_json::Value> = records.iter().filter(|r| r["status"] == "ok").collect();
    let failed: Vec<&serde_json::Value> =
        records.iter().filter(|r| r["status"] == "failed").collect();
    assert_eq!(
        (ok.len(), failed.len()),
        (1, 1),
        "the first cell kept, the one in progress failed, the last never started"
    );
    assert!(ok[0]["windows"][0]["domain_energy_j"]["cpu-package"].is_number());
    // No window of the failed cell is reported over what was left of the tree.
    assert!(failed[0]["windows"]
        .as_array()
        .is_none_or(|w| w.iter().all(|w| w["energy_j"].is_null())));
}

#[test]
fn explicit_rapl_without_rapl_is_a_configuration_error_before_anything_is_measured() {
    let f = Fixture::new(&experiment(
        "kind = \"rapl\"\npowercap_root = \"/nonexistent/powercap\"",
        "[2]",
    ));
    let run = f.dir.path().join("run");
    let out = f
        .runner()
        .args(["exp.toml", "--out"])
        .arg(&run)
        .output()
        .unwrap();
    let stderr = stderr_of(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(
            "sensor.kind = \"rapl\": RAPL is not present: /nonexistent/powercap does not exist"
        ),
        "{stderr}"
    );
    assert!(stderr.contains("modprobe intel_rapl_msr"), "{stderr}");
    assert!(!run.exists(), "nothing measured, nothing written");
}

/// A run with `sensor.kind = "auto"` on `tree`: exit 0, and the one line that says why energy
/// was not measured.
fn auto_run_says_why(f: &Fixture, root: &Path) -> String {
    std::fs::write(
        &f.file,
        experiment(
            &format!("powercap_root = {:?}", root.display().to_string()),
            "[2]",
        ),
    )
    .unwrap();
    let out = f
        .runner()
        .args(["exp.toml", "--out"])
        .arg(f.dir.path().join("run"))
        .output()
        .unwrap();
    let stderr = stderr_of(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("energy not measured"))
        .collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    let md = read_text(&f.dir.path().join("run/report.md"));
    assert!(md.contains("Energy was not measured"), "{md}");
    lines[0].to_string()
}

#[test]
fn auto_with_a_counter_that_holds_nonsense_says_so_in_one_line_and_estimates_nothing() {
    let f = Fixture::new("");
    let root = f.dir.path().join("powercap");
    let tree = FakePowercap::new(&root);
    drop(tree); // a still tree: its counters as written
    std::fs::write(root.join("intel-rapl:1:0/energy_uj"), "lots\n").unwrap();
    let line = auto_run_says_why(&f, &root);
    assert!(
        line.contains("the cells ran on the CPU, and RAPL counter ")
            && line.contains("intel-rapl:1:0/energy_uj holds \"lots\", not a whole number of µJ"),
        "{line}"
    );
}

#[test]
fn auto_with_counters_only_root_may_read_says_how_to_grant_access() {
    let f = Fixture::new("");
    let root = f.dir.path().join("powercap");
    drop(FakePowercap::new(&root));
    let energy = root.join("intel-rapl:0/energy_uj");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&energy, std::fs::Permissions::from_mode(0o000)).unwrap();
    if std::fs::read(&energy).is_ok() {
        // Root (or CAP_DAC_OVERRIDE) reads a mode-000 file: sensor::powercap's tests answer as
        // the kernel does instead.
        skipped(
            "rapl::auto_with_counters_only_root_may_read_says_how_to_grant_access",
            "running as root, who reads a mode-000 file (the permission-denied path is tested in src/sensor/powercap.rs)",
        );
        return;
    }
    let line = auto_run_says_why(&f, &root);
    assert!(line.contains("RAPL is not readable: "), "{line}");
    assert!(
        line.contains("permission denied (since Linux 5.10"),
        "{line}"
    );
    assert!(line.contains("sudo chmod a+r "), "{line}");
}
