//! Which sensors meter a run, from `sensor.kind` and what this machine has. An explicit kind that
//! cannot work is a configuration error (exit 2) before anything is measured; `auto` takes what
//! is there and says in one line what is not, so no report ever passes a missing domain off as
//! measured, and nothing is estimated in its place.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;

use super::powercap::{PowercapFs, SysFs};
use super::rapl::RaplSensor;
use super::{nvml, Composite, EnergySensor, NoSensor};
use crate::config::{SensorKind, SensorSection};
use crate::device::DeviceInfo;
use crate::error::ConfigError;

/// The sensor, and what the user is told about what it leaves out (one line each).
pub struct Selection {
    pub sensor: Box<dyn EnergySensor>,
    pub notices: Vec<String>,
}

/// Picks the sensors for `sensor.kind` on this device. `shared_host` says why the host's
/// counters belong to no single cell (other workers measuring on this host at the same time).
pub fn select(
    section: &SensorSection,
    device: &DeviceInfo,
    shared_host: Option<&str>,
) -> Result<Selection> {
    select_with(section, device, shared_host, Arc::new(SysFs))
}

/// [`select`] over a given filesystem (tests answer as a kernel would).
pub fn select_with(
    section: &SensorSection,
    device: &DeviceInfo,
    shared_host: Option<&str>,
    fs: Arc<dyn PowercapFs>,
) -> Result<Selection> {
    let on_gpu = device.backend == "cuda";
    let kind = section.kind.name();
    let host = || -> std::result::Result<RaplSensor, String> {
        if let Some(why) = shared_host {
            return Err(format!("the host's CPU packages and DRAM are not metered: {why}, so no share of their energy belongs to one cell"));
        }
        RaplSensor::open(fs.clone(), &section.powercap_root).map_err(|u| u.line())
    };
    let required_host = || {
        host().map_err(|why| {
            ConfigError::new(format!(
                "sensor.kind = \"{kind}\": {why}; or set sensor.kind = \"auto\" (meters what this machine has, says what it lacks)"
            ))
        })
    };
    let selection = |sensor: Box<dyn EnergySensor>| Selection {
        sensor,
        notices: Vec::new(),
    };
    match section.kind {
        SensorKind::None => Ok(selection(Box::new(NoSensor::new(
            "sensor.kind = \"none\" in the experiment",
        )))),
        SensorKind::Nvml => Ok(selection(required_gpu(section, device)?)),
        SensorKind::Rapl => Ok(selection(Box::new(required_host()?))),
        SensorKind::NvmlRapl => {
            let gpu = required_gpu(section, device)?;
            let host = required_host()?;
            Ok(selection(Box::new(Composite::new(vec![
                gpu,
                Box::new(host),
            ]))))
        }
        SensorKind::Auto => {
            let gpu = if on_gpu {
                let interval = Duration::from_millis(section.sample_interval_ms);
                let opened = nvml_wrapper::Nvml::init()
                    .map_err(anyhow::Error::from)
                    .and_then(|nvml| {
                        let uuid = device.uuid.as_deref().unwrap_or_default();
                        nvml::NvmlSensor::open(nvml, uuid, interval)
                    });
                opened
                    .map(|s| Box::new(s) as Box<dyn EnergySensor>)
                    .map_err(|e| format!("NVML is not usable on this GPU ({e:#})"))
            } else {
                Err("the cells ran on the CPU".to_string())
            };
            Ok(auto(gpu, host()))
        }
    }
}

/// `auto`: what answered, metered side by side; what did not, said.
fn auto(
    gpu: std::result::Result<Box<dyn EnergySensor>, String>,
    host: std::result::Result<RaplSensor, String>,
) -> Selection {
    match (gpu, host) {
        (Ok(gpu), Ok(host)) => Selection {
            sensor: Box::new(Composite::new(vec![gpu, Box::new(host)])),
            notices: Vec::new(),
        },
        (Ok(gpu), Err(why)) => Selection {
            sensor: gpu,
            notices: vec![format!(
                "energy covers the GPU board only, not the CPU or DRAM: {why}"
            )],
        },
        (Err(why), Ok(host)) => Selection {
            notices: (why != "the cells ran on the CPU")
                .then(|| {
                    format!("energy covers the CPU packages and DRAM only, not the GPU: {why}")
                })
                .into_iter()
                .collect(),
            sensor: Box::new(host),
        },
        (Err(gpu_why), Err(host_why)) => Selection {
            sensor: Box::new(NoSensor::new(format!("{gpu_why}, and {host_why}"))),
            notices: Vec::new(),
        },
    }
}

/// NVML on the GPU the cells run on, or the configuration error naming what is missing.
fn required_gpu(section: &SensorSection, device: &DeviceInfo) -> Result<Box<dyn EnergySensor>> {
    let kind = section.kind.name();
    let nvml = nvml_wrapper::Nvml::init().map_err(|e| {
        ConfigError::new(format!(
            "sensor.kind = \"{kind}\" but NVML could not be loaded ({e}): install NVIDIA's driver (libnvidia-ml.so), or set sensor.kind = \"auto\", \"rapl\" or \"none\""
        ))
    })?;
    let Some(uuid) = device.uuid.as_deref().filter(|_| device.backend == "cuda") else {
        return Err(ConfigError::new(format!(
            "sensor.kind = \"{kind}\" meters an NVIDIA GPU, but the cells run on the {} ({}): run on a GPU (device.backend = \"cuda\"), or set sensor.kind = \"auto\", \"rapl\" or \"none\"",
            device.backend, device.name
        ))
        .into());
    };
    let interval = Duration::from_millis(section.sample_interval_ms);
    let sensor = nvml::NvmlSensor::open(nvml, uuid, interval)
        .map_err(|e| ConfigError::new(format!("sensor.kind = \"{kind}\": {e:#}")))?;
    Ok(Box::new(sensor))
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::*;
    use crate::sensor::powercap::fake::FakeFs;
    use crate::sensor::{CPU_PACKAGE, DRAM};

    fn cpu() -> DeviceInfo {
        DeviceInfo {
            backend: "cpu".into(),
            ordinal: None,
            name: "Some CPU".into(),
            uuid: None,
            cpu_threads: 2,
            cublas_version: None,
        }
    }

    fn section(kind: SensorKind) -> SensorSection {
        SensorSection {
            kind,
            powercap_root: PathBuf::from("/fake/powercap"),
            ..SensorSection::default()
        }
    }

    fn two_sockets() -> Arc<FakeFs> {
        Arc::new(FakeFs::sockets(
            Path::new("/fake/powercap"),
            2,
            262_143_328_850,
            7,
        ))
    }

    fn err(r: Result<Selection>) -> String {
        match r {
            Ok(_) => panic!("expected an error"),
            Err(e) => {
                assert!(e.downcast_ref::<ConfigError>().is_some(), "exit 2: {e:#}");
                format!("{e:#}")
            }
        }
    }

    #[test]
    fn auto_on_a_cpu_with_rapl_meters_the_packages_and_dram_without_a_notice() {
        let s = select_with(&section(SensorKind::Auto), &cpu(), None, two_sockets()).unwrap();
        let info = s.sensor.info();
        assert_eq!((info.kind.as_str(), info.measures_energy), ("rapl", true));
        assert_eq!(info.metered, [CPU_PACKAGE, DRAM]);
        assert!(s.notices.is_empty(), "{:?}", s.notices);
        let s = select_with(&section(SensorKind::Rapl), &cpu(), None, two_sockets()).unwrap();
        assert_eq!(s.sensor.info().kind, "rapl");
    }

    #[test]
    fn auto_without_rapl_says_which_in_its_note_and_measures_nothing() {
        let absent = Arc::new(FakeFs::default());
        let s = select_with(&section(SensorKind::Auto), &cpu(), None, absent).unwrap();
        let info = s.sensor.info();
        assert!(!info.measures_energy);
        assert!(
            info.note.starts_with(
                "the cells ran on the CPU, and RAPL is not present: /fake/powercap does not exist"
            ),
            "{}",
            info.note
        );
        let denied = two_sockets();
        denied.fail(
            Path::new("/fake/powercap/intel-rapl:1/energy_uj"),
            std::io::ErrorKind::PermissionDenied,
        );
        let s = select_with(&section(SensorKind::Auto), &cpu(), None, denied).unwrap();
        let note = s.sensor.info().note;
        assert!(note.contains("RAPL is not readable"), "{note}");
        assert!(note.contains("chmod a+r"), "{note}");
    }

    #[test]
    fn explicit_rapl_without_rapl_is_a_configuration_error_before_anything_is_measured() {
        let e = err(select_with(
            &section(SensorKind::Rapl),
            &cpu(),
            None,
            Arc::new(FakeFs::default()),
        ));
        assert!(
            e.starts_with("sensor.kind = \"rapl\": RAPL is not present"),
            "{e}"
        );
        assert!(
            e.ends_with(
                "or set sensor.kind = \"auto\" (meters what this machine has, says what it lacks)"
            ),
            "{e}"
        );
        let denied = two_sockets();
        denied.fail(
            Path::new("/fake/powercap/intel-rapl:0:0/energy_uj"),
            std::io::ErrorKind::PermissionDenied,
        );
        let e = err(select_with(
            &section(SensorKind::Rapl),
            &cpu(),
            None,
            denied,
        ));
        assert!(e.contains("RAPL is not readable"), "{e}");
        // nvml+rapl needs a GPU first.
        let e = err(select_with(
            &section(SensorKind::NvmlRapl),
            &cpu(),
            None,
            two_sockets(),
        ));
        assert!(e.contains("sensor.kind = \"nvml+rapl\""), "{e}");
    }

    #[test]
    fn workers_sharing_the_host_leave_its_counters_out() {
        let why = "2 workers measure on this host at once";
        let s = select_with(&section(SensorKind::Auto), &cpu(), Some(why), two_sockets()).unwrap();
        let note = s.sensor.info().note;
        assert!(!s.sensor.info().measures_energy);
        assert!(
            note.contains("2 workers measure on this host at once, so no share"),
            "{note}"
        );
        let e = err(select_with(
            &section(SensorKind::Rapl),
            &cpu(),
            Some(why),
            two_sockets(),
        ));
        assert!(e.contains("2 workers measure on this host at once"), "{e}");
    }

    #[test]
    fn auto_on_a_gpu_adds_the_host_where_it_can_and_says_where_it_cannot() {
        // NVML cannot be opened without a GPU: a stand-in GPU part goes through `auto` instead.
        use crate::sensor::compose::tests::FakeGpu;
        let gpu = || -> std::result::Result<Box<dyn EnergySensor>, String> {
            Ok(Box::new(FakeGpu {
                power_w: 100.0,
                window_s: 1.0,
                log: Default::default(),
                fail_stop: false,
            }))
        };
        let rapl = || RaplSensor::open(two_sockets(), Path::new("/fake/powercap"));
        let s = auto(gpu(), Ok(rapl().unwrap()));
        let info = s.sensor.info();
        assert_eq!(info.kind, "nvml+rapl");
        assert_eq!(info.metered, ["gpu-board", CPU_PACKAGE, DRAM]);
        assert!(s.notices.is_empty());
        let absent = RaplSensor::open(
            Arc::new(FakeFs::default()),
            Path::new("/sys/class/powercap"),
        )
        .map_err(|u| u.line());
        let s = auto(gpu(), absent);
        assert_eq!(s.sensor.info().metered, ["gpu-board"]);
        assert_eq!(s.notices.len(), 1);
        assert!(
            s.notices[0].starts_with("energy covers the GPU board only, not the CPU or DRAM: RAPL is not present: /sys/class/powercap does not exist"),
            "{:?}",
            s.notices
        );
        let no_nvml = || Err("NVML is not usable on this GPU (no driver)".to_string());
        let s = auto(no_nvml(), Ok(rapl().unwrap()));
        assert_eq!(
            s.notices,
            ["energy covers the CPU packages and DRAM only, not the GPU: NVML is not usable on this GPU (no driver)"]
        );
        let s = auto(no_nvml(), Err("RAPL is not present: x".into()));
        assert!(!s.sensor.info().measures_energy);
        assert_eq!(
            s.sensor.info().note,
            "NVML is not usable on this GPU (no driver), and RAPL is not present: x"
        );
    }
}
