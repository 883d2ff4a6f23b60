//! Labels that tell cells apart: a cell's label names its value on every axis that varies among
//! the cells of the run (and only those), from [`Cell::axes`], so a new axis appears in every
//! label, legend and chart series without touching them. Also which cell is "the same but for"
//! some axes: the partner a ratio compares with.

use serde::Serialize;

use crate::matrix::{AxisValue, Cell};

/// An axis's title as a table header.
pub fn axis_title(axis: &str) -> &str {
    match axis {
        "batch_size" => "batch",
        "seq_len" => "seq",
        "prompt_len" => "prompt",
        "new_tokens" => "new tokens",
        "layer_method" => "layer method",
        other => other,
    }
}

/// The axes that vary among a run's cells.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Labels {
    varying: Vec<String>,
}

impl Labels {
    /// An axis varies when the cells it applies to hold two values or more of it (a float
    /// precision's cells, which quantize nothing, do not make `quantize` vary).
    pub fn new<'a>(cells: impl IntoIterator<Item = &'a Cell>) -> Self {
        let all: Vec<Vec<AxisValue>> = cells.into_iter().map(Cell::axes).collect();
        let Some(first) = all.first() else {
            return Self::default();
        };
        let varying = first
            .iter()
            .enumerate()
            .filter(|(i, _)| {
                let mut values: Vec<&String> =
                    all.iter().filter_map(|a| a[*i].value.as_ref()).collect();
                values.sort();
                values.dedup();
                values.len() > 1
            })
            .map(|(_, a)| a.axis.clone())
            .collect();
        Self { varying }
    }

    pub fn varying(&self) -> &[String] {
        &self.varying
    }

    pub fn varies(&self, axis: &str) -> bool {
        self.varying.iter().any(|a| a == axis)
    }

    /// The cell's values on every varying axis, e.g. `fp8-fp16 b16 quantize=ffn`.
    pub fn label(&self, cell: &Cell) -> String {
        self.label_without(cell, &[])
    }

    /// The label without `omit` (axes the context already names: a chart's x axis, a section
    /// per model). Where no axis is left to name, precision and batch size, as before axes
    /// varied (`fp32 b1`).
    pub fn label_without(&self, cell: &Cell, omit: &[&str]) -> String {
        let axes = cell.axes();
        let words = |pick: &dyn Fn(&AxisValue) -> bool| -> Vec<String> {
            axes.iter()
                .filter(|a| pick(a) && !omit.contains(&a.axis.as_str()) && !a.short.is_empty())
                .map(|a| a.short.clone())
                .collect()
        };
        let named = words(&|a| self.varies(&a.axis));
        if !named.is_empty() {
            return named.join(" ");
        }
        words(&|a| a.axis == "precision" || a.axis == "batch_size").join(" ")
    }
}

/// The cell's value on every axis that applies to it, constant or not (`distilbert fp16 b16 seq
/// 128 layers method=prefix`): what the cell is, where no run's other cells give context (a
/// heading, `runner compare`).
pub fn description(cell: &Cell) -> String {
    cell.axes()
        .iter()
        .filter(|a| !a.short.is_empty())
        .map(|a| a.short.as_str())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Whether `a` and `b` are the same cell but for the axes in `except`: every other axis equal
/// where it applies to both (fp16 and fp8-fp16 quantize=ffn compare on the other axes, since
/// `quantize` does not apply to fp16).
pub fn same_except(a: &Cell, b: &Cell, except: &[&str]) -> bool {
    a.axes()
        .iter()
        .zip(b.axes())
        .filter(|(x, _)| !except.contains(&x.axis.as_str()))
        .all(|(x, y)| match (&x.value, &y.value) {
            (Some(v), Some(w)) => v == w,
            _ => true,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{LayerMethod, Precision, QuantizeSelection, Scope, AXES};

    pub(crate) fn cell(precision: &str, batch: usize, quantize: &str) -> Cell {
        Cell {
            id: format!("{precision}-{batch}-{quantize}"),
            model: "distilbert".into(),
            precision: Precision::parse(precision).unwrap(),
            batch_size: batch,
            seq_len: 128,
            prompt_len: None,
            new_tokens: None,
            scope: Scope::Model,
            quantize: QuantizeSelection::parse(quantize).unwrap(),
            layer_method: LayerMethod::Isolated,
            prefill_attention: crate::config::PrefillAttention::Plain,
        }
    }

    #[test]
    fn every_axis_of_the_experiment_files_is_an_axis_of_the_cell() {
        let names: Vec<String> = cell("fp16", 1, "all")
            .axes()
            .into_iter()
            .map(|a| a.axis)
            .collect();
        assert_eq!(names, AXES);
    }

    #[test]
    fn labels_name_the_quantize_selection_only_where_it_varies() {
        // The W8A8 selection run: fp16 and fp8-fp16 in three selections, at two batch sizes.
        let cells: Vec<Cell> = [16, 64]
            .into_iter()
            .flat_map(|b| {
                [
                    cell("fp16", b, "all"),
                    cell("fp8-fp16", b, "all"),
                    cell("fp8-fp16", b, "ffn"),
                    cell("fp8-fp16", b, "blocks:0-5"),
                ]
            })
            .collect();
        let labels = Labels::new(&cells);
        assert_eq!(labels.varying(), ["precision", "batch_size", "quantize"]);
        let all: Vec<String> = cells[..4].iter().map(|c| labels.label(c)).collect();
        assert_eq!(
            all,
            [
                "fp16 b16",
                "fp8-fp16 b16 quantize=all",
                "fp8-fp16 b16 quantize=ffn",
                "fp8-fp16 b16 quantize=blocks:0-5"
            ]
        );
        // Distinct labels for distinct cells.
        let mut distinct: Vec<String> = cells.iter().map(|c| labels.label(c)).collect();
        distinct.sort();
        distinct.dedup();
        assert_eq!(distinct.len(), cells.len());
        // A chart's series: batch size on the x axis.
        assert_eq!(
            labels.label_without(&cells[2], &["batch_size"]),
            "fp8-fp16 quantize=ffn"
        );
        // A flagship without selections: no quantize word, as before.
        let plain = [cell("fp32", 8, "all"), cell("q8_0", 8, "all")];
        let labels = Labels::new(&plain);
        assert_eq!(labels.label(&plain[1]), "q8_0");
        assert_eq!(Labels::new(&plain[..1]).label(&plain[0]), "fp32 b8");
    }

    #[test]
    fn partners_differ_only_in_the_axes_named() {
        let (fp16, ffn, all) = (
            cell("fp16", 16, "all"),
            cell("fp8-fp16", 16, "ffn"),
            cell("fp8-fp16", 16, "all"),
        );
        assert!(same_except(&ffn, &fp16, &["precision"]));
        assert!(!same_except(&ffn, &all, &["precision"]));
        assert!(same_except(&ffn, &all, &["quantize"]));
        assert!(!same_except(
            &ffn,
            &cell("fp8-fp16", 64, "ffn"),
            &["precision"]
        ));
    }
}
