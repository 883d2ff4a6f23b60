//! The time `runner plan` (and a run, before its first cell) gives a decoder's layers cell counts
//! what `protocol.layer_isolation = "in-step"` runs: each top-level unit's step predecessor
//! measured alone through the whole protocol, one more unit per embeddings, layer and head and
//! phase. Session 8's in-step run took 1.49x its estimate, which left them out. Through the real
//! binary on the CPU, where a window is `min_window_s` (no energy counter to wait for).

mod common;
use common::*;

/// A llama-tiny own decoder (2 layers), its layers cell alone; windows of 1 s, 2 a unit, so a
/// unit costs 2.1 s of protocol (0.1 s of warm-up) whatever its loop.
fn experiment(isolation: &str, method: &str) -> Fixture {
    Fixture::new(&format!(
        "[experiment]\nname = \"estimate\"\n[device]\nbackend = \"cpu\"\n\
         [protocol]\nwarmup_s = 0.1\nwarmup_min_loops = 1\nstabilize_s = 0.0\nmin_window_s = 1.0\n\
         min_loops = 1\nrepeats = 2\nidle_settle_s = 0.0\nidle_baseline_s = 0.0\nlayer_isolation = \"{isolation}\"\n\
         [dataset]\npath = \"{}\"\ntokenizer = \"{}\"\nlimit = 64\n\
         [models.own]\narchitecture = \"llama\"\npreset = \"llama-tiny\"\nimplementation = \"own\"\n\
         [matrix]\nmodel = [\"own\"]\nprecision = [\"fp32\"]\nbatch_size = [1]\nprompt_len = [16]\n\
         new_tokens = [8]\nscope = [\"layers\"]\nlayer_method = [\"{method}\"]\n",
        repo("datasets/rotten_tomatoes_sentences.tsv").display(),
        repo("datasets/bert-base-uncased-vocab.txt").display(),
    ))
}

/// `runner plan`'s two figures, in seconds: the protocol's least time, and this CPU's estimate.
fn plan(isolation: &str, method: &str) -> (f64, f64) {
    let f = experiment(isolation, method);
    let out = f.runner().args(["plan", "exp.toml"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let seconds = |after: &str| -> f64 {
        let at = text
            .find(after)
            .unwrap_or_else(|| panic!("no {after:?} in {text}"));
        let rest = &text[at + after.len()..];
        let figure: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
        assert!(
            rest[figure.len()..].starts_with(" s"),
            "{after:?} not in seconds: {text}"
        );
        figure.parse().unwrap()
    };
    (
        seconds("the protocol alone takes at least "),
        seconds("it runs take about "),
    )
}

#[test]
fn an_in_step_layers_cell_is_priced_with_its_predecessor_loops() {
    let (least_warm, about_warm) = plan("warm", "isolated");
    let (least_cold, about_cold) = plan("cold", "isolated");
    let (least_in_step, about_in_step) = plan("in-step", "isolated");
    // Warm and cold measure the same units: 2 phases x (2 layers x 3 + embeddings + head).
    let unit_s = 0.1 + 2.0 * 1.0;
    assert!((least_warm - 16.0 * unit_s).abs() <= 1.0, "{least_warm}");
    assert_eq!((least_warm, about_warm), (least_cold, about_cold));
    // In-step adds, per phase, the embeddings', each layer's and the head's predecessor alone:
    // 2 x 4 units of 2.1 s, 16.8 s (each figure is rounded to the second).
    let predecessors_s = 2.0 * 4.0 * unit_s;
    let added = least_in_step - least_warm;
    assert!((added - predecessors_s).abs() <= 1.0, "{added}");
    let added = about_in_step - about_warm;
    assert!((added - predecessors_s).abs() <= 1.5, "{added}");
    // The estimate is the least time and what the tiny loops add, never less.
    assert!(
        about_in_step >= least_in_step,
        "{about_in_step} {least_in_step}"
    );
}

#[test]
fn prefixes_are_priced_alike_whatever_the_isolation() {
    assert_eq!(plan("warm", "prefix"), plan("in-step", "prefix"));
}
