//! The `quantize` matrix axis: the plan it gives (ids, order, merged float cells), the records of
//! a run (which linear layers were quantized; `top:K` ranked by the run's own layers cell), and
//! bad selections refused before anything runs, naming the key and the file (insta snapshots).

mod common;
use common::*;

use runner::results::CellRecord;

const HEADER: &str = "[experiment]\nname = \"quant\"\n";

fn experiment(matrix: &str) -> String {
    format!(
        "{HEADER}{}{FAST_PROTOCOL}[matrix]\n{matrix}",
        common_tables()
    )
}

/// `runner plan` on `toml`: (exit code, stdout, stderr normalized).
fn plan(toml: &str) -> (Option<i32>, String, String) {
    let f = Fixture::new(toml);
    let out = f.runner().args(["plan", "exp.toml"]).output().unwrap();
    (
        out.status.code(),
        stdout_of(&out),
        f.normalize(&stderr_of(&out)),
    )
}

/// A plan listing without its CPU time estimate, whose measured matmul rates differ from one
/// `runner plan` to the next (the rest must be identical).
fn stable(listing: &str) -> String {
    listing
        .lines()
        .filter(|l| !l.starts_with("(on this CPU"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Cell lines of a plan listing: (id, precision, scope, quantize).
fn cells(listing: &str) -> Vec<(String, String, String, String)> {
    listing
        .lines()
        .filter(|l| l.len() > 12 && runner::matrix::is_cell_id(&l[..12]))
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let q = f.get(6).copied().unwrap_or("").to_string();
            (f[0].into(), f[2].into(), f[5].into(), q)
        })
        .collect()
}

#[test]
fn the_axis_keeps_old_ids_merges_float_cells_and_plans_top_k_after_the_profile() {
    let base = "precision = [\"fp16\", \"q8_0\"]\nbatch_size = [2]\nseq_len = [16]\nscope = [\"model\", \"layers\"]\n";
    let (code, without, _) = plan(&experiment(base));
    assert_eq!(code, Some(0));
    assert!(
        !without.contains("QUANTIZE"),
        "no column without the axis: {without}"
    );
    // The default written out changes nothing: same cells, same ids, same listing.
    let (_, explicit, _) = plan(&experiment(&format!(
        "{base}quantize = [\"all\"]\nlayer_method = [\"isolated\"]\n"
    )));
    assert_eq!(stable(&without), stable(&explicit));

    let (code, with, stderr) = plan(&experiment(&format!(
        "{base}quantize = [\"top:1\", \"none\", \"all\", \"ffn\", \"blocks:0-1\"]\nexclude = [{{ scope = \"layers\", quantize = \"none\" }}, {{ scope = \"layers\", quantize = \"ffn\" }}, {{ scope = \"layers\", quantize = \"top:1\" }}, {{ scope = \"layers\", quantize = \"blocks:0-1\" }}]\n"
    )));
    assert_eq!(code, Some(0), "{stderr}");
    assert!(with.contains("QUANTIZE"), "{with}");
    let listed = cells(&with);
    let old = cells(&without);
    // Every cell of the plan without the axis is still there, with its id: fp16 cells (nothing
    // to select: the five selections merge into one) and the q8_0 cells quantizing all layers.
    for (id, precision, scope, _) in &old {
        assert!(
            listed
                .iter()
                .any(|c| &c.0 == id && &c.1 == precision && &c.2 == scope),
            "{id} {precision} {scope} lost: {with}"
        );
    }
    assert!(with.contains("duplicate combination(s) merged"), "{with}");
    let fp16: Vec<_> = listed.iter().filter(|c| c.1 == "fp16").collect();
    assert_eq!(fp16.len(), 2, "{with}");
    assert!(fp16.iter().all(|c| c.3 == "-"));
    let q8_model: Vec<&str> = listed
        .iter()
        .filter(|c| c.1 == "q8_0" && c.2 == "model")
        .map(|c| c.3.as_str())
        .collect();
    assert_eq!(q8_model.len(), 5, "{with}");
    for s in ["none", "all", "ffn", "blocks:0-1", "top:1"] {
        assert!(q8_model.contains(&s), "{s}: {with}");
    }
    // Ids differ by selection.
    let mut ids: Vec<&str> = listed.iter().map(|c| c.0.as_str()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), listed.len());
    // top:1 ranks by a layers cell: planned after every layers cell (first in the file here).
    let last_layers = listed.iter().rposition(|c| c.2 == "layers").unwrap();
    let top = listed.iter().position(|c| c.3 == "top:1").unwrap();
    assert!(top > last_layers, "{with}");
}

#[test]
fn a_run_records_which_layers_were_quantized_and_ranks_top_k_by_its_own_profile() {
    let f = Fixture::new(&experiment(
        "precision = [\"fp32\", \"int8-fp32\"]\nbatch_size = [2]\nseq_len = [16]\nscope = [\"layers\", \"model\"]\nquantize = [\"top:1\", \"all\", \"ffn\"]\nexclude = [{ scope = \"layers\", precision = \"int8-fp32\" }]\n",
    ));
    let run = f.dir.path().join("run");
    let out = f
        .runner()
        .args(["exp.toml", "--out"])
        .arg(&run)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    let records: Vec<CellRecord> = std::fs::read_dir(run.join("cells"))
        .unwrap()
        .map(|e| serde_json::from_slice(&std::fs::read(e.unwrap().path()).unwrap()).unwrap())
        .collect();
    let by = |s: &str| {
        records
            .iter()
            .find(|r| r.cell.quantize.name() == s && r.cell.precision.name() == "int8-fp32")
            .unwrap_or_else(|| panic!("no int8-fp32 {s} cell"))
    };
    let profile = records
        .iter()
        .find(|r| !r.layers.is_empty())
        .expect("the fp32 layers cell");
    assert!(profile.quantization.is_none(), "fp32 quantizes nothing");

    let all = by("all").quantization.as_ref().unwrap();
    assert_eq!(all.quantized.len(), 6, "{all:?}");
    assert!(all.float.is_empty());
    let ffn = by("ffn").quantization.as_ref().unwrap();
    assert_eq!(
        ffn.quantized,
        ["transformer_block_0.ffn", "transformer_block_1.ffn"]
    );
    assert_eq!(
        ffn.float.len(),
        4,
        "attention x2, pre_classifier, classifier stay float"
    );
    assert!(by("ffn")
        .precision_executed
        .as_deref()
        .unwrap()
        .contains("quantized: 2 of 6 linear sites"));

    let top = by("top:1").quantization.as_ref().unwrap();
    assert_eq!(top.ranked_by.as_deref(), Some(profile.cell.id.as_str()));
    assert_eq!(top.ranking[0].metric, "latency");
    // The layer with the largest share is quantized (both of its sites), and only it.
    let first = &top.ranking[0].layer;
    assert!(top
        .ranking
        .windows(2)
        .all(|w| w[0].share_pct >= w[1].share_pct));
    assert!(
        top.quantized.iter().all(|s| s.starts_with(first.as_str())),
        "{top:?}"
    );
    assert!(!top.quantized.is_empty());
    // Each selection is compared with fp32 like any quantized cell.
    assert!(by("top:1").fidelity.is_some());

    let md = std::fs::read_to_string(run.join("report.md")).unwrap();
    assert!(
        md.contains("### Quantize selections: tiny int8-fp32"),
        "{md}"
    );
    assert!(md.contains("| `top:1` |"), "{md}");

    // Every row of summary.csv names its selection (empty for fp32, which quantizes nothing)
    // and every label that shows a cell names it too: three int8-fp32 cells, three labels.
    let csv = std::fs::read_to_string(run.join("summary.csv")).unwrap();
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let col = |name: &str| header.iter().position(|c| *c == name).unwrap();
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    let mut selections: Vec<(&str, &str, &str)> = rows
        .iter()
        .map(|r| (r[col("precision")], r[col("scope")], r[col("quantize")]))
        .collect();
    selections.sort();
    assert_eq!(
        selections,
        [
            ("fp32", "layers", ""),
            ("fp32", "model", ""),
            ("int8-fp32", "model", "all"),
            ("int8-fp32", "model", "ffn"),
            ("int8-fp32", "model", "top:1"),
        ],
        "{csv}"
    );
    assert!(header.contains(&"layer_method"));
    for label in [
        "int8-fp32 quantize=all",
        "int8-fp32 quantize=ffn",
        "int8-fp32 quantize=top:1",
    ] {
        assert!(md.contains(label), "{label} in {md}");
    }
    // The trade-off chart's legend has a series per selection, not one per precision.
    let tradeoff = std::fs::read_to_string(run.join("charts/tradeoff-fidelity-tiny-s16.svg"))
        .expect("the fidelity trade-off chart");
    for label in ["int8-fp32 quantize=all", "int8-fp32 quantize=ffn"] {
        assert!(tradeoff.contains(label), "{label} in {tradeoff}");
    }
    // The CPU runs W8A8 as the numerics reference: never ranked on speed, and said why.
    assert!(
        md.contains("**Not ranked on speed:** int8-fp32 quantize="),
        "{md}"
    );
    let lowest_latency = md
        .lines()
        .find(|l| l.contains("**lowest latency per batch**"))
        .unwrap();
    assert!(lowest_latency.contains(": fp32 "), "{lowest_latency}");
    let per_layer = std::fs::read_to_string(run.join("per_layer.csv")).unwrap();
    assert!(per_layer
        .lines()
        .next()
        .unwrap()
        .contains(",quantize,layer_method,"));
    assert!(
        per_layer.lines().skip(1).all(|l| l.contains(",isolated,")),
        "{per_layer}"
    );
}

fn refused(matrix: &str) -> String {
    let (code, stdout, stderr) = plan(&experiment(matrix));
    assert_eq!(code, Some(2), "stdout: {stdout} stderr: {stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    stderr
}

const QUANTIZED: &str = "precision = [\"q8_0\"]\nbatch_size = [2]\nseq_len = [16]\n";

#[test]
fn a_backwards_block_range_is_refused_naming_the_key() {
    let msg = refused(&format!(
        "{QUANTIZED}quantize = [\"all\", \"blocks:5-2\"]\n"
    ));
    insta::assert_snapshot!("blocks_backwards", msg);
}

#[test]
fn a_block_the_model_lacks_is_refused_naming_the_key() {
    let msg = refused(&format!("{QUANTIZED}quantize = [\"blocks:0-99\"]\n"));
    insta::assert_snapshot!("blocks_beyond_the_model", msg);
}

#[test]
fn top_zero_and_more_layers_than_the_model_has_are_refused() {
    let msg = refused(&format!(
        "{QUANTIZED}scope = [\"model\", \"layers\"]\nquantize = [\"top:0\"]\n"
    ));
    insta::assert_snapshot!("top_zero", msg);
    let msg = refused(&format!(
        "{QUANTIZED}scope = [\"model\", \"layers\"]\nquantize = [\"top:9\"]\n"
    ));
    insta::assert_snapshot!("top_beyond_the_model", msg);
}

#[test]
fn an_unknown_selection_gets_a_suggestion() {
    let msg = refused(&format!("{QUANTIZED}quantize = [\"atention\"]\n"));
    insta::assert_snapshot!("unknown_selection", msg);
}

#[test]
fn top_k_without_a_layers_cell_to_rank_by_is_refused() {
    let msg = refused(&format!("{QUANTIZED}quantize = [\"top:2\"]\n"));
    insta::assert_snapshot!("top_without_profile", msg);
}

#[test]
fn a_selection_without_a_quantized_precision_is_refused() {
    let msg = refused("precision = [\"fp16\"]\nquantize = [\"ffn\"]\n");
    insta::assert_snapshot!("selection_without_quantized_precision", msg);
}

#[test]
fn an_unknown_layer_method_gets_a_suggestion() {
    let msg = refused("scope = [\"layers\"]\nlayer_method = [\"prefixes\"]\n");
    insta::assert_snapshot!("unknown_layer_method", msg);
}
