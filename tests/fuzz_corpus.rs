//! Replays the fuzz corpus (fuzz/corpus/config_and_matrix: the shipped experiments, hand-written
//! hostile files and inputs libFuzzer found) through the loader and matrix expansion, as the fuzz
//! target does: every input must end in a plan or a configuration error, never a panic.

use std::path::Path;

#[test]
fn every_corpus_input_loads_or_is_refused_without_panicking() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/config_and_matrix");
    // Beside the real experiments, as in the fuzz target, so relative dataset paths resolve.
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("experiments/fuzzed.toml");
    let (mut planned, mut refused) = (0, 0);
    for entry in std::fs::read_dir(&corpus).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        let Ok(text) = std::str::from_utf8(&bytes) else {
            continue;
        };
        // As in the fuzz target: `#set ` lines are --set overrides.
        let overrides: Vec<String> = text
            .lines()
            .filter_map(|l| l.strip_prefix("#set "))
            .map(str::to_string)
            .collect();
        let loaded = runner::config::load_text(&file, text, &overrides);
        if let Ok(e) = &loaded {
            runner::config::assert_runnable(e);
        }
        match loaded.map(|e| (runner::matrix::expand(&e, runner::matrix::Target::Cpu), e)) {
            Ok((Ok(plan), e)) => {
                assert!(!plan.cells.is_empty());
                let cells: Vec<_> = plan.cells.iter().collect();
                assert!(runner::run::protocol_lower_bound_s(&e, &cells).is_finite());
                planned += 1;
            }
            Ok((Err(e), _)) => {
                assert!(!e.problems.is_empty());
                refused += 1;
            }
            Err(e) => {
                assert!(!e.problems.is_empty());
                refused += 1;
            }
        }
    }
    // The shipped experiments plan; the hostile seeds are refused.
    assert!(planned >= 3, "{planned} inputs planned");
    assert!(refused >= 4, "{refused} inputs refused");
}

/// Replays fuzz/corpus/run_records (real records, a manifest, a session and a trace from the
/// committed runs, and hostile edits of them) through the readers of a run directory, as the
/// fuzz target `run_records` does: each input is read and checked or refused by name, never a
/// panic, and a record that passes gives finite statistics.
#[test]
fn every_run_records_corpus_input_is_read_or_refused_without_panicking() {
    use std::path::PathBuf;
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/run_records");
    let (mut accepted, mut refused) = (Vec::new(), Vec::new());
    for entry in std::fs::read_dir(&corpus).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let data = std::fs::read(&path).unwrap();
        let mut ok = false;
        if let Ok(m) = runner::results::parse_manifest(&data, Path::new("run/manifest.json")) {
            let mut ids: Vec<&str> = m.plan.iter().map(|c| c.id.as_str()).collect();
            ids.sort_unstable();
            ids.dedup();
            assert_eq!(ids.len(), m.plan.len(), "{name}");
            ok = true;
        }
        ok |= runner::results::parse_session(&data, Path::new("run/sessions/gpu0-1.json")).is_ok();
        if let Ok(samples) = runner::results::parse_trace(&data, Path::new("run/traces/t.csv")) {
            assert!(
                samples
                    .iter()
                    .all(|s| s.t_s.is_finite() && s.power_w.is_finite()),
                "{name}"
            );
            ok |= !samples.is_empty();
        }
        if let Ok(claimed) = serde_json::from_slice::<runner::results::CellRecord>(&data) {
            let file = PathBuf::from(format!("run/cells/{}.json", claimed.cell.id));
            let checked =
                runner::results::parse_record(&data, &file, Some(&claimed.cell), &claimed.protocol);
            match checked {
                Ok(r) => {
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
                        assert!(v.is_finite(), "{name}: {v}");
                    }
                    ok = true;
                }
                Err(e) => assert!(e.to_string().contains("cells/"), "{name}: {e}"),
            }
        }
        if ok {
            accepted.push(name)
        } else {
            refused.push(name)
        }
    }
    accepted.sort();
    refused.sort();
    // The runner's own files are read; every hostile edit is refused.
    assert!(
        accepted.iter().all(|n| !n.starts_with("hostile")),
        "accepted: {accepted:?}"
    );
    assert!(accepted.len() >= 6, "accepted: {accepted:?}");
    assert!(
        refused.iter().all(|n| n.starts_with("hostile")),
        "refused: {refused:?}"
    );
    assert!(refused.len() >= 10, "refused: {refused:?}");
}
