//! Any bytes as an experiment file: loading, validation and matrix expansion must answer with a
//! value or a `ConfigError`, never panic, hang or run out of memory.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // Beside the real experiments, so the seeds' relative dataset paths resolve and inputs get
    // past validation into matrix expansion.
    let file = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../experiments/fuzzed.toml"));
    if let Ok(experiment) = runner::config::load_text(file, text, &[]) {
        if let Ok(plan) = runner::matrix::expand(&experiment) {
            assert!(!plan.cells.is_empty(), "a valid plan has cells");
        }
    }
});
