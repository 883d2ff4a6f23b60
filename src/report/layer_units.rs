//! What a layers cell's units are, read from its rows, for the paragraph the per-layer section
//! gives each cell: an encoder's (embeddings, blocks of four components, pooling and
//! classifier) or a decoder's (embeddings, decoder layers of attention and MLP halves, the head
//! with the step's tail; prefill and decode apart). The report names what the cell ran, not
//! what an encoder would have run.

use serde::Serialize;

use crate::analysis::LayerSummary;

#[derive(Debug, Serialize, PartialEq)]
pub(super) struct LayerUnits {
    /// "decoder" (rows per phase) or "encoder".
    pub kind: &'static str,
    /// The phases profiled apart, in the order measured (a decoder: prefill, decode); empty for
    /// an encoder.
    pub phases: Vec<String>,
    /// Top-level units before the first block (the embeddings).
    pub before: Vec<String>,
    /// Blocks (`transformer_block_N`) per phase.
    pub blocks: usize,
    /// The components each block is also measured as, in order, without the block's prefix
    /// (an encoder's attention, sa_layer_norm, ffn, output_layer_norm; a decoder's attention,
    /// mlp); empty when the blocks were measured whole only.
    pub components: Vec<String>,
    /// Top-level units after the last block (pre_classifier or pooler, classifier; lm_head).
    pub after: Vec<String>,
}

const BLOCK: &str = "transformer_block_";

/// The units of one layers cell's rows (all of one cell).
pub(super) fn layer_units(rows: &[&LayerSummary]) -> LayerUnits {
    let mut phases: Vec<String> = Vec::new();
    for r in rows {
        if let Some(p) = r.phase {
            let p = p.name().to_string();
            if !phases.contains(&p) {
                phases.push(p);
            }
        }
    }
    // One phase's rows describe the others: each phase measures the same units.
    let phase = rows.first().and_then(|r| r.phase);
    let first_phase: Vec<&&LayerSummary> = rows.iter().filter(|r| r.phase == phase).collect();
    let top: Vec<&str> = first_phase
        .iter()
        .filter(|r| r.parent.is_none())
        .map(|r| r.layer_name.as_str())
        .collect();
    let is_block = |name: &str| name.starts_with(BLOCK);
    let first_block = top.iter().position(|n| is_block(n));
    let last_block = top.iter().rposition(|n| is_block(n));
    let (before, after) = match (first_block, last_block) {
        (Some(f), Some(l)) => (&top[..f], &top[l + 1..]),
        _ => (&top[..], &top[top.len()..]),
    };
    let components = first_block
        .map(|f| {
            let prefix = format!("{}.", top[f]);
            first_phase
                .iter()
                .filter(|r| r.parent.as_deref() == Some(top[f]))
                .map(|r| {
                    r.layer_name
                        .strip_prefix(&prefix)
                        .unwrap_or(&r.layer_name)
                        .to_string()
                })
                .collect()
        })
        .unwrap_or_default();
    LayerUnits {
        kind: if phases.is_empty() {
            "encoder"
        } else {
            "decoder"
        },
        phases,
        before: before.iter().map(|s| s.to_string()).collect(),
        blocks: top.iter().filter(|n| is_block(n)).count(),
        components,
        after: after.iter().map(|s| s.to_string()).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::Phase;

    fn row(name: &str, parent: Option<&str>, phase: Option<Phase>) -> LayerSummary {
        LayerSummary {
            cell_id: "c".into(),
            model: "m".into(),
            precision: "fp32".into(),
            batch_size: 1,
            seq_len: 16,
            phase,
            per: "inference".into(),
            layer_name: name.into(),
            layer_idx: 0,
            parent: parent.map(str::to_string),
            avg_power_w: None,
            total_time_s: 1.0,
            energy_total_j: None,
            energy_per_inference_mj: None,
            energy_ci_low_mj: None,
            energy_ci_high_mj: None,
            energy_net_per_inference_mj: None,
            num_loops: 1,
            calls_per_loop: 1,
            latency_per_loop_ms: None,
            latency_ci_low_ms: None,
            latency_ci_high_ms: None,
            num_power_samples: 0,
            counter_ticks: None,
            energy_share_pct: None,
            latency_share_pct: None,
            savings: None,
            cold: None,
            predecessor: None,
        }
    }

    fn rows_of(phase: Option<Phase>, components: &[&str], head: &[&str]) -> Vec<LayerSummary> {
        let mut rows = vec![row("embeddings", None, phase)];
        for b in 0..3 {
            let block = format!("{BLOCK}{b}");
            rows.push(row(&block, None, phase));
            for c in components {
                rows.push(row(&format!("{block}.{c}"), Some(&block), phase));
            }
        }
        rows.extend(head.iter().map(|h| row(h, None, phase)));
        rows
    }

    #[test]
    fn an_encoder_cell_is_described_by_its_own_units() {
        let rows = rows_of(
            None,
            &["attention", "sa_layer_norm", "ffn", "output_layer_norm"],
            &["pre_classifier", "classifier"],
        );
        let units = layer_units(&rows.iter().collect::<Vec<_>>());
        assert_eq!(
            units,
            LayerUnits {
                kind: "encoder",
                phases: vec![],
                before: vec!["embeddings".into()],
                blocks: 3,
                components: ["attention", "sa_layer_norm", "ffn", "output_layer_norm"]
                    .map(String::from)
                    .to_vec(),
                after: vec!["pre_classifier".into(), "classifier".into()],
            }
        );
    }

    #[test]
    fn a_decoder_cell_is_described_per_phase_with_its_halves_and_head() {
        let mut rows = rows_of(Some(Phase::Prefill), &["attention", "mlp"], &["lm_head"]);
        rows.extend(rows_of(
            Some(Phase::Decode),
            &["attention", "mlp"],
            &["lm_head"],
        ));
        let units = layer_units(&rows.iter().collect::<Vec<_>>());
        assert_eq!(units.kind, "decoder");
        assert_eq!(units.phases, ["prefill", "decode"]);
        // Per phase, not both phases' blocks counted together.
        assert_eq!(units.blocks, 3);
        assert_eq!(units.components, ["attention", "mlp"]);
        assert_eq!(units.before, ["embeddings"]);
        assert_eq!(units.after, ["lm_head"]);
    }

    #[test]
    fn blocks_measured_whole_have_no_components() {
        let rows = rows_of(None, &[], &["mean_pooling", "classifier"]);
        let units = layer_units(&rows.iter().collect::<Vec<_>>());
        assert!(units.components.is_empty());
        assert_eq!(units.after, ["mean_pooling", "classifier"]);
    }
}
