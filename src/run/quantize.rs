//! A cell's `quantize` selection resolved to the linear sites its model quantizes. `top:K` ranks
//! the layers by the profile of an earlier `layers` cell of the same run (the plan puts every
//! `layers` cell first), so the record names that cell and the ranking it used.

use anyhow::Result;

use crate::analysis::methods;
use crate::config::QuantizeSelection;
use crate::matrix::{self, Cell};
use crate::model::{Encoder, LinearSite, ModelSpec};
use crate::results::{CellRecord, CellStatus, QuantizationRecord, RankedLayer};

/// What a cell quantizes.
pub(super) struct Selection {
    selection: QuantizeSelection,
    quantized_precision: bool,
    /// `None`: every linear site (the precision as it always was).
    pub sites: Option<Vec<LinearSite>>,
    ranked_by: Option<String>,
    ranking: Vec<RankedLayer>,
}

impl Selection {
    /// For the record: the sites the loaded model quantized and those it left in the float path.
    pub fn record(&self, model: &Encoder) -> Option<QuantizationRecord> {
        if !self.quantized_precision {
            return None;
        }
        let quantized = model.quantized_sites();
        let float = model
            .linear_sites()
            .iter()
            .map(|s| s.name(model.pooling()))
            .filter(|n| !quantized.contains(n))
            .collect();
        Some(QuantizationRecord {
            selection: self.selection.name(),
            quantized,
            float,
            ranked_by: self.ranked_by.clone(),
            ranking: self.ranking.clone(),
        })
    }
}

/// The sites of a top-level layer named as the profiler names it (`transformer_block_3`,
/// `pre_classifier`, `pooler`, `classifier`).
fn sites_of(layer: &str) -> Vec<LinearSite> {
    if let Some(b) = layer
        .strip_prefix("transformer_block_")
        .and_then(|b| b.parse().ok())
    {
        return vec![LinearSite::Attention(b), LinearSite::Ffn(b)];
    }
    match layer {
        "pre_classifier" | "pooler" => vec![LinearSite::Pooler],
        "classifier" => vec![LinearSite::Classifier],
        _ => Vec::new(),
    }
}

/// The selection's sites for `cell`; `top:K` needs its ranking cell among `earlier` records.
pub(super) fn resolve(
    cell: &Cell,
    plan: &[Cell],
    earlier: &[CellRecord],
    spec: &ModelSpec,
) -> Result<Selection> {
    let quantized_precision = cell.precision.float_path().is_some();
    let mut out = Selection {
        selection: cell.quantize,
        quantized_precision,
        sites: None,
        ranked_by: None,
        ranking: Vec::new(),
    };
    if !quantized_precision {
        return Ok(out);
    }
    let blocks = spec.encoder().map_or(0, |p| p.n_layers);
    let both = |range: std::ops::RangeInclusive<usize>| -> Vec<LinearSite> {
        range
            .flat_map(|b| [LinearSite::Attention(b), LinearSite::Ffn(b)])
            .collect()
    };
    out.sites = match cell.quantize {
        QuantizeSelection::All => None,
        QuantizeSelection::None => Some(Vec::new()),
        QuantizeSelection::Ffn => Some((0..blocks).map(LinearSite::Ffn).collect()),
        QuantizeSelection::Attention => Some((0..blocks).map(LinearSite::Attention).collect()),
        QuantizeSelection::Blocks(a, b) => {
            anyhow::ensure!(
                b < blocks,
                "quantize = \"blocks:{a}-{b}\": model {:?} has {blocks} transformer blocks",
                cell.model
            );
            Some(both(a..=b))
        }
        QuantizeSelection::Top(k) => {
            let source = matrix::ranking_source(cell, plan).ok_or_else(|| {
                anyhow::anyhow!(
                    "quantize = \"top:{k}\" needs a layers cell of the same model and shapes to rank the layers by, and the plan has none"
                )
            })?;
            let profile = earlier
                .iter()
                .find(|r| r.cell.id == source.id && r.status == CellStatus::Ok)
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "quantize = \"top:{k}\" ranks the layers by layers cell {}, which has no successful record yet (it failed, or another worker has not finished it): measure it, then this cell again (--resume)",
                        source.id
                    )
                })?;
            let (metric, ranking) = methods::layer_ranking(profile);
            out.ranked_by = Some(source.id.clone());
            out.ranking = ranking
                .iter()
                .map(|(layer, share)| RankedLayer {
                    layer: layer.clone(),
                    share_pct: *share,
                    metric: metric.name().to_string(),
                })
                .collect();
            Some(
                ranking
                    .iter()
                    .take(k)
                    .flat_map(|(l, _)| sites_of(l))
                    .collect(),
            )
        }
    };
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiled_layer_names_map_to_their_linear_sites() {
        assert_eq!(
            sites_of("transformer_block_4"),
            [LinearSite::Attention(4), LinearSite::Ffn(4)]
        );
        assert_eq!(sites_of("pre_classifier"), [LinearSite::Pooler]);
        assert_eq!(sites_of("pooler"), [LinearSite::Pooler]);
        assert_eq!(sites_of("classifier"), [LinearSite::Classifier]);
        assert!(sites_of("embeddings").is_empty());
    }
}
