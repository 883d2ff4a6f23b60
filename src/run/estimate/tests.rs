//! The estimate's prices and its refinement as cells finish.

use super::*;
use crate::config::{LayerMethod, QuantizeSelection};

/// A workload of fixed prices: 0.1 s a loop, 2 s outside for non-fp32 cells.
struct Fixed;
impl CellCost for Fixed {
    fn unit_loops_s(&self, _: &Cell) -> Vec<f64> {
        vec![0.1]
    }
    fn outside_s(&self, c: &Cell, _: bool) -> f64 {
        if c.precision == Precision::Fp32 {
            0.0
        } else {
            2.0
        }
    }
    fn basis(&self) -> String {
        "fixed".into()
    }
}

fn cell(precision: &str, batch: usize) -> Cell {
    Cell {
        id: format!("{precision}{batch}"),
        model: "m".into(),
        precision: Precision::parse(precision).unwrap(),
        batch_size: batch,
        seq_len: 16,
        prompt_len: None,
        new_tokens: None,
        scope: Scope::Model,
        quantize: QuantizeSelection::All,
        layer_method: LayerMethod::Isolated,
        prefill_attention: crate::config::PrefillAttention::Plain,
    }
}

#[test]
fn the_estimate_learns_from_measured_cells_and_never_runs_away() {
    let p = ProtocolSection {
        repeats: 6,
        ..ProtocolSection::default()
    };
    let cells = [
        cell("fp32", 1),
        cell("fp32", 8),
        cell("fp16", 1),
        cell("fp16", 8),
    ];
    let refs: Vec<&Cell> = cells.iter().collect();
    let mut e = Estimate::new(&refs, &Fixed, &p, WindowFloor::NONE);
    let per = protocol_s(&p, &[0.1], WindowFloor::NONE);
    assert!((e.initial_s - (4.0 * per + 4.0)).abs() < 1e-9);
    // Before anything ran: the whole run is left, minus nothing.
    assert!((e.remaining_s(0, 0.0) - e.initial_s).abs() < 1e-9);
    // Far into the first cell: what is left of it never goes below a second, nor negative.
    assert!(e.remaining_s(0, 1e9) >= 3.0 * per);
    // The fp32 cells took twice their price: the other fp32 cell is priced twice, the fp16
    // cells (no cell of theirs measured yet) by the run's median.
    e.finished(0, 2.0 * per);
    assert!((e.remaining_s(1, 0.0) - (2.0 * per + 2.0 * 2.0 * (per + 2.0))).abs() < 1e-9);
    // fp16 measured as priced: its cells return to their price.
    e.finished(2, per + 2.0);
    assert!((e.remaining_s(3, 0.0) - (per + 2.0)).abs() < 1e-9);
    // Past the last cell: nothing left.
    assert_eq!(e.remaining_s(4, 0.0), 0.0);
}

/// A random-weight decoder's cell pays its model's load, and the first of its model also the
/// fp32 reference's, each at the measured rate of its dtype; a layers cell in-step pays its
/// predecessor loops (2 phases x (layers + 2) units more than warm).
#[test]
fn a_decoder_cell_is_priced_with_its_loads_and_its_in_step_loops() {
    use crate::config::{Implementation, LayerIsolation as Iso};
    use crate::model::{decoder::DecoderSpec, Family};
    let d = DecoderSpec::resolve("llama", Some("llama-tiny"), None, 3, Implementation::Own);
    let d = d.unwrap();
    let (params, layers) = (d.shapes.parameters() as f64, d.shapes.layers);
    let spec = ModelSpec {
        name: "m".into(),
        family: Family::Decoder(Box::new(d)),
        probe: None,
        seed: 3,
    };
    let specs = BTreeMap::from([("m".to_string(), spec)]);
    let rates = BTreeMap::from([(FloatPrecision::Bf16, 1e9), (FloatPrecision::Fp32, 1e9)]);
    let cost = |isolation, random_load| DecoderCost {
        specs: &specs,
        rates: rates.clone(),
        weight_read: rates.clone(),
        isolation,
        random_load,
    };
    let (warm, loads) = (
        Iso::Warm,
        [(FloatPrecision::Bf16, 1e-8), (FloatPrecision::Fp32, 3e-8)],
    );
    let (free, loaded) = (
        cost(warm, BTreeMap::new()),
        cost(warm, BTreeMap::from(loads)),
    );
    let c = Cell {
        prompt_len: Some(16),
        new_tokens: Some(8),
        ..cell("bf16", 1)
    };
    let added = |first| loaded.outside_s(&c, first) - free.outside_s(&c, first);
    assert!(
        (added(false) - params * 1e-8).abs() < 1e-12,
        "{}",
        added(false)
    );
    assert!(
        (added(true) - params * 4e-8).abs() < 1e-12,
        "{}",
        added(true)
    );
    let layers_cell = Cell {
        scope: Scope::Layers,
        ..c
    };
    let (w, s) = (
        free.unit_loops_s(&layers_cell),
        cost(Iso::InStep, BTreeMap::new()),
    );
    assert_eq!(
        s.unit_loops_s(&layers_cell).len(),
        w.len() + 2 * (layers + 2)
    );
}

#[test]
fn encoder_flops_count_the_projections_the_ffn_and_attention() {
    let preset = crate::config::Preset::DISTILBERT_BASE_UNCASED;
    // Per block at batch 1, seq 128: 2*128*(4*768^2 + 2*768*3072) + 4*128^2*768.
    let block = 2.0 * 128.0 * (4.0 * 768.0f64.powi(2) + 2.0 * 768.0 * 3072.0)
        + 4.0 * 128.0f64.powi(2) * 768.0;
    assert!((encoder_flops(&preset, 1, 128) - 6.0 * block).abs() < 1.0);
    // ~11.2 GFLOP a pass of DistilBERT-base at seq 128 (half of BERT-base's usual ~22).
    assert!((encoder_flops(&preset, 1, 128) / 1e9 - 11.17).abs() < 0.05);
}
