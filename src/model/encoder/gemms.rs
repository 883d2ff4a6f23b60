//! `device.gemm_library`: which library runs each linear's GEMM (cuBLASLt or the runner's CUTLASS
//! GEMMs with fused epilogues), set on the loaded encoder and read back for the record, per
//! linear site, so a record from before the setting existed stays comparable with a new one.

use std::collections::BTreeMap;

use super::linear::Linear;
use super::Encoder;
use crate::config::GemmLibrary;

impl Encoder {
    /// Sets the GEMM library of every W8A8 linear and of the float FFN-in. Layers it cannot take
    /// keep cuBLASLt, and the record says which and why (`implementation.gemms`).
    pub fn set_gemm_library(&mut self, library: GemmLibrary) {
        let set = |l: &mut Linear| {
            if let Linear::EightBit(e) = l {
                e.set_gemm_library(library);
            }
        };
        for b in &mut self.blocks {
            b.gemm_library = library;
            if let Some(qkv) = &mut b.qkv {
                set(&mut qkv.projection);
            }
            for l in [
                &mut b.q_lin,
                &mut b.k_lin,
                &mut b.v_lin,
                &mut b.out_lin,
                &mut b.lin1,
                &mut b.lin2,
            ] {
                set(l);
            }
        }
        self.pooler
            .iter_mut()
            .chain(&mut self.classifier)
            .for_each(set);
    }

    /// (site, GEMM) for every linear that runs, blocks in order.
    fn gemm_sites(&self) -> Vec<(String, String)> {
        let mut sites = Vec::new();
        for b in &self.blocks {
            let mut add = |name: &str, l: &Linear, gelu: bool| {
                sites.push((name.to_string(), describe(l, gelu, b.gemm_library)));
            };
            match &b.qkv {
                Some(qkv) => add("qkv", &qkv.projection, false),
                None => {
                    add("q", &b.q_lin, false);
                    add("k", &b.k_lin, false);
                    add("v", &b.v_lin, false);
                }
            }
            add("attention_out", &b.out_lin, false);
            add("ffn_in", &b.lin1, true);
            add("ffn_out", &b.lin2, false);
        }
        for (name, l) in [("pooler", &self.pooler), ("classifier", &self.classifier)] {
            if let Some(l) = l {
                sites.push((name.to_string(), describe(l, false, GemmLibrary::Cublaslt)));
            }
        }
        sites
    }

    /// The record's `gemms` (per site: which GEMM and epilogue, with the blocks it holds for) and
    /// `gemm_library` (what was asked and what the binary has).
    pub(super) fn record_gemms(&self, implementation: &mut BTreeMap<String, String>) {
        let mut by_site: Vec<(String, Vec<(String, usize)>)> = Vec::new();
        for (site, what) in self.gemm_sites() {
            let entry = match by_site.iter_mut().find(|(s, _)| *s == site) {
                Some(e) => e,
                None => {
                    by_site.push((site.clone(), Vec::new()));
                    by_site.last_mut().expect("just pushed")
                }
            };
            match entry.1.iter_mut().find(|(w, _)| *w == what) {
                Some((_, n)) => *n += 1,
                None => entry.1.push((what, 1)),
            }
        }
        let blocks = self.blocks.len();
        let text = by_site
            .iter()
            .map(|(site, whats)| {
                let whats = whats
                    .iter()
                    .map(|(w, n)| match site.as_str() {
                        "pooler" | "classifier" => w.clone(),
                        _ => format!("{w} ({n} of {blocks} blocks)"),
                    })
                    .collect::<Vec<_>>()
                    .join("; ");
                format!("{site}: {whats}")
            })
            .collect::<Vec<_>>()
            .join(" | ");
        implementation.insert("gemms".into(), text);
        self.amend_for_cutlass(implementation);
        if self.device.is_cuda() {
            let asked = self
                .blocks
                .first()
                .map(|b| b.gemm_library)
                .unwrap_or_default();
            implementation.insert(
                "gemm_library".into(),
                format!(
                    "device.gemm_library = {}; this binary's CUTLASS: {}",
                    asked.name(),
                    crate::ops::cutlass::BUILD
                ),
            );
        }
    }
}

impl Encoder {
    /// The record's `linear`, `activation` and `activation_quantization` as they are with CUTLASS
    /// (describe.rs writes the cuBLASLt path's).
    fn amend_for_cutlass(&self, implementation: &mut BTreeMap<String, String>) {
        let Some(block) = self.blocks.first() else {
            return;
        };
        use crate::ops::cutlass::{gelu_erf, Inputs, Kind};
        let erf = match &block.lin1 {
            Linear::EightBit(e) => gelu_erf(e.cutlass_kind(true)),
            Linear::Float(f) => gelu_erf(Kind {
                inputs: Inputs::Float,
                out: f.weight().dtype(),
                gelu: true,
                fast_accumulation: false,
            }),
            Linear::Quantized { .. } => "none",
        };
        let gelu = format!("erf GELU in FFN-in's CUTLASS epilogue (0.5 x (1 + erf(x / sqrt 2)) in f32, erf by a {erf})");
        match &block.lin1 {
            Linear::EightBit(e) if e.cutlass(true).is_ok() => {
                let fmt = e.format().name();
                let packed = self.ffns_quantized_in_gelu() > 0;
                implementation.insert(
                    "activation".into(),
                    if packed {
                        format!("{gelu}; FFN-out's {fmt} input quantized per row by a runner kernel reading that output once (a row's scale needs all of its columns, which no CTA of the GEMM holds)")
                    } else {
                        gelu.clone()
                    },
                );
                if let Some(q) = implementation.get_mut("activation_quantization") {
                    let inside = format!("quantized to {fmt} inside FFN-in's GELU kernel");
                    *q = q.replace(
                        &inside,
                        "quantized by a row pass over FFN-in's GELU output (CUTLASS epilogue)",
                    );
                }
            }
            l @ Linear::Float(_) if l.float_cutlass(block.gemm_library).is_ok() => {
                implementation.insert("activation".into(), gelu);
            }
            _ => {}
        }
        let eight_bit_cutlass = self.linears().any(|l| {
            matches!(l, Linear::EightBit(e) if e.cutlass(false).is_ok() || e.cutlass(true).is_ok())
        });
        if eight_bit_cutlass {
            let fmt = self
                .linears()
                .find_map(|l| l.eight_bit())
                .map(|e| e.name())
                .unwrap_or("8-bit");
            implementation.insert(
                "linear".into(),
                format!("W8A8 {fmt} on tensor cores: each input quantized per token (dynamic scale) by a runner kernel, or by the layer norm or FFN-in that writes it; {fmt} x {fmt} GEMM through CUTLASS 3.x (sm90a, TMA, warp-specialized; tiles and schedule by row count, per linear: gemms) with the token x channel scales, the bias and (FFN-in) erf GELU in its epilogue, output in the float dtype (no int32 round trip); weights per output channel, symmetric; per linear: gemms"),
            );
        }
    }
}

/// One linear's GEMM as it runs (`gelu`: FFN-in).
fn describe(l: &Linear, gelu: bool, library: GemmLibrary) -> String {
    match l {
        Linear::EightBit(e) => e.gemm_description(gelu),
        Linear::Float(f) if gelu && l.float_cutlass(library).is_ok() => {
            let kind = crate::ops::cutlass::Kind {
                inputs: crate::ops::cutlass::Inputs::Float,
                out: f.weight().dtype(),
                gelu: true,
                fast_accumulation: false,
            };
            format!(
                "CUTLASS float GEMM (f32 accumulation), epilogue: bias + erf GELU ({})",
                crate::ops::cutlass::describe(kind)
            )
        }
        // Off CUDA (the CPU backend) candle_nn::Linear runs: the gemm crate's matmul, the bias
        // and GELU as candle ops (linear.rs's linear_2d), no cuBLAS and no runner kernel.
        Linear::Float(f) if !crate::ops::fused::fused_on(f.weight().device()) => {
            let ops = if gelu {
                "bias add + erf GELU"
            } else {
                "bias add"
            };
            format!("candle matmul on the CPU (gemm crate), {ops} as candle ops")
        }
        Linear::Float(_) => {
            let why = if gelu && library == GemmLibrary::Cutlass {
                match l.float_cutlass(library) {
                    Err(why) => format!(" (CUTLASS not used: {why})"),
                    Ok(()) => String::new(),
                }
            } else {
                String::new()
            };
            let bias = if gelu {
                "bias + erf GELU in a runner kernel"
            } else {
                "bias in a runner kernel or the next layer norm"
            };
            format!("cuBLAS float GEMM (candle matmul), {bias}{why}")
        }
        // quantized_forward: QMatMul, then ops::fused::bias_act (a runner kernel on CUDA only).
        Linear::Quantized { bias, .. } => {
            let ops = if gelu { "bias + erf GELU" } else { "bias" };
            if crate::ops::fused::fused_on(bias.device()) {
                format!("GGML QMatMul, {ops} in a runner kernel")
            } else {
                format!("GGML QMatMul on the CPU (candle's kernels), {ops} as candle ops")
            }
        }
    }
}
