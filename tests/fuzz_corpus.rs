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
        match loaded.map(|e| (runner::matrix::expand(&e), e)) {
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
