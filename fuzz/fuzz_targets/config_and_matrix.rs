//! Any bytes as an experiment file: loading, validation and matrix expansion must answer with a
//! value or a `ConfigError`, never panic, hang or run out of memory; and whatever passes
//! validation must be usable by a run (every duration a timer can hold, a finite time estimate).
//! Lines starting with `#set ` are `--set` overrides, so the fuzzer reaches those too.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let overrides: Vec<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("#set "))
        .map(str::to_string)
        .collect();
    // Beside the real experiments, so the seeds' relative dataset paths resolve and inputs get
    // past validation into matrix expansion.
    let file = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../experiments/fuzzed.toml"));
    if let Ok(experiment) = runner::config::load_text(file, text, &overrides) {
        runner::config::assert_runnable(&experiment);
        if let Ok(plan) = runner::matrix::expand(&experiment) {
            assert!(!plan.cells.is_empty(), "a valid plan has cells");
            let cells: Vec<_> = plan.cells.iter().collect();
            let bound = runner::run::protocol_lower_bound_s(&experiment, &cells);
            assert!(bound.is_finite() && bound >= 0.0, "lower bound {bound}");
        }
    }
});
