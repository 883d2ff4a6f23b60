//! Any bytes as a file of a run directory read back (a manifest, a cell record, a worker's
//! session, a power trace): reading must answer with a checked value or a refusal naming the
//! file, never panic, hang or run out of memory; and a record that passes the checks must give
//! finite statistics (no NaN or inf reaches a report or a comparison). A record is checked
//! against the cell it names, as the plan of its own run would hold it.
#![no_main]

use std::path::{Path, PathBuf};

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = runner::results::parse_manifest(data, Path::new("run/manifest.json")) {
        let mut ids: Vec<&str> = m.plan.iter().map(|c| c.id.as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), m.plan.len(), "a checked plan holds each cell once");
    }
    let _ = runner::results::parse_session(data, Path::new("run/sessions/gpu0-1.json"));
    if let Ok(samples) = runner::results::parse_trace(data, Path::new("run/traces/t.csv")) {
        assert!(samples.iter().all(|s| s.t_s.is_finite() && s.power_w.is_finite()));
    }
    if let Ok(claimed) = serde_json::from_slice::<runner::results::CellRecord>(data) {
        let path = PathBuf::from(format!("run/cells/{}.json", claimed.cell.id));
        let planned = claimed.cell.clone();
        if let Ok(r) =
            runner::results::parse_record(data, &path, Some(&planned), &claimed.protocol)
        {
            let s = runner::analysis::summarize(&r);
            for v in [
                s.latency_per_loop_ms,
                s.energy_per_inference_mj,
                s.energy_net_per_inference_mj,
                s.avg_power_w,
                s.throughput_samples_per_s,
            ]
            .into_iter()
            .flatten()
            {
                assert!(v.is_finite(), "a checked record gave {v}: {s:?}");
            }
        }
    }
});
