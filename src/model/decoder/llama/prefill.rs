//! The prefill's attention (`prefill_attention`): candle's plain ops (f32 scores over K and V
//! repeated for every query head), or the runner's flash kernel over the KV cache
//! (src/ops/prefill.rs); `auto` resolved per cell, the same way when the plan names the cell
//! (its id) and when the model loads (what runs), and what the record says ran.

use candle_core::{DType, Result};

use super::LlamaFamily;
use crate::config::{Implementation, Precision, PrefillAttention};
use crate::model::decoder::DecoderSpec;
use crate::ops::prefill;

const PLAIN: &str = "plain: candle's f32 matmul of the queries against K and V repeated for every query head (repeat_kv), the (len, start + len) causal mask, softmax, matmul";

/// A `prefill_attention` choice resolved for one cell: `plain` or `flash` (never `auto`), and
/// why, where the key left the choice to the runner or could not have its way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub attention: PrefillAttention,
    pub note: Option<String>,
}

/// What `choice` runs for a model of `dtype` and these head shapes, on CUDA or not (a build
/// without CUDA never is). `auto`: flash where it can run (bf16/f16 on CUDA, a head_dim with a
/// kernel), plain elsewhere, saying why. An explicit `flash` on the CPU, or at a shape without a
/// kernel, is an error naming the key (no fallback); at f32 it runs plain and says so, as it did
/// before `auto` existed.
pub fn resolve(
    choice: PrefillAttention,
    on_cuda: bool,
    dtype: DType,
    head_dim: usize,
    heads: usize,
    kv_heads: usize,
) -> std::result::Result<Resolved, String> {
    let float = matches!(dtype, DType::BF16 | DType::F16);
    let unsupported = prefill::unsupported(head_dim, heads, kv_heads, dtype);
    let plain = |note: Option<String>| Resolved {
        attention: PrefillAttention::Plain,
        note,
    };
    let flash = |note: Option<String>| Resolved {
        attention: PrefillAttention::Flash,
        note,
    };
    Ok(match choice {
        PrefillAttention::Plain => plain(None),
        PrefillAttention::Flash if !on_cuda => return Err(
            "prefill_attention = \"flash\": the flash prefill attention is a CUDA kernel and this cell runs on the CPU; leave the key out (auto: plain on the CPU) or write \"plain\"".into(),
        ),
        PrefillAttention::Flash if !float => plain(Some(format!(
            "prefill_attention = \"flash\" asked; the kernel is bf16/f16 and this model is {dtype:?}"
        ))),
        PrefillAttention::Flash => match unsupported {
            Some(why) => return Err(format!("prefill_attention = \"flash\": {why}")),
            None => flash(None),
        },
        PrefillAttention::Auto if !on_cuda => plain(Some(
            "prefill_attention = \"auto\": plain, as this cell runs on the CPU (the flash kernel is CUDA's)".into(),
        )),
        PrefillAttention::Auto if !float => plain(Some(format!(
            "prefill_attention = \"auto\": plain, as this model is {dtype:?} (the flash kernel is bf16/f16)"
        ))),
        PrefillAttention::Auto => match unsupported {
            Some(why) => plain(Some(format!("prefill_attention = \"auto\": plain, as {why}"))),
            None => flash(Some(format!(
                "prefill_attention = \"auto\": flash, as this cell runs {dtype:?} on CUDA"
            ))),
        },
    })
}

impl DecoderSpec {
    /// The prefill attention a cell of this decoder at `precision` runs, on CUDA or not: what the
    /// plan puts in the cell (and its id) before anything is measured. `None` for
    /// candle-transformers' models, which have one attention and no key.
    pub fn prefill_attention_for(
        &self,
        precision: Precision,
        on_cuda: bool,
    ) -> std::result::Result<Option<Resolved>, String> {
        if self.implementation != Implementation::Own {
            return Ok(None);
        }
        let s = &self.shapes;
        resolve(
            self.prefill_attention,
            on_cuda,
            self.dtype(precision),
            s.head_dim,
            s.heads,
            s.kv_heads,
        )
        .map(Some)
    }
}

impl LlamaFamily {
    /// Every layer's prefill attention, `choice` resolved for this model's dtype and device (as
    /// the plan resolved it for the cell); the record says what runs and, where the runner
    /// chose or could not follow the key, why.
    pub fn set_prefill_attention(&mut self, choice: PrefillAttention) -> Result<()> {
        let cfg = &self.cfg;
        let on_cuda = cfg!(feature = "cuda") && self.device.is_cuda();
        let resolved = resolve(
            choice,
            on_cuda,
            self.dtype,
            cfg.head_dim,
            cfg.heads,
            cfg.kv_heads,
        )
        .map_err(candle_core::Error::msg)?;
        let flash = resolved.attention == PrefillAttention::Flash;
        for block in &mut self.blocks {
            block.attention.flash_prefill = flash;
        }
        let what = if flash {
            format!("flash ({})", prefill::FLASH_DESCRIPTION)
        } else {
            PLAIN.to_string()
        };
        let text = match resolved.note {
            Some(note) => format!("{what} ({note})"),
            None => what,
        };
        self.implementation.insert("prefill_attention".into(), text);
        Ok(())
    }

    /// Whether the prefill runs the flash kernel.
    pub fn flash_prefill(&self) -> bool {
        self.blocks
            .first()
            .is_some_and(|b| b.attention.flash_prefill)
    }
}

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use crate::config::{Implementation, Precision, PrefillAttention};
    use crate::model::decoder::DecoderSpec;

    /// On the CPU `flash` is refused at load naming the key (no fallback); `plain` runs and the
    /// record says so.
    #[test]
    fn the_cpu_refuses_flash_and_records_plain() {
        let mut s = DecoderSpec::resolve("llama", Some("llama-tiny"), None, 3, Implementation::Own)
            .unwrap();
        s.prefill_attention = PrefillAttention::Flash;
        let err = match s.load(Precision::Fp32, &Device::Cpu) {
            Ok(_) => panic!("a flash prefill loaded on the CPU"),
            Err(e) => format!("{e:#}"),
        };
        assert!(err.contains("prefill_attention = \"flash\""), "{err}");
        assert!(err.contains("CPU"), "{err}");
        s.prefill_attention = PrefillAttention::Plain;
        let m = s.load(Precision::Fp32, &Device::Cpu).unwrap();
        let record = m.implementation();
        assert!(
            record["prefill_attention"].starts_with("plain"),
            "{record:?}"
        );
    }

    /// `auto` (the default) on the CPU: the model loads with the plain attention at every
    /// precision, and its record says auto chose plain and why.
    #[test]
    fn auto_loads_plain_on_the_cpu_and_says_why() {
        let mut s = DecoderSpec::resolve("llama", Some("llama-tiny"), None, 3, Implementation::Own)
            .unwrap();
        // What an experiment file gets without the key.
        let section: crate::config::ModelSection =
            toml::from_str("architecture = \"llama\"\npreset = \"llama-tiny\"").unwrap();
        assert_eq!(section.prefill_attention, PrefillAttention::Auto);
        s.prefill_attention = section.prefill_attention;
        for precision in [Precision::Fp32, Precision::Bf16] {
            let m = s.load(precision, &Device::Cpu).unwrap();
            let text = &m.implementation()["prefill_attention"];
            assert!(text.starts_with("plain"), "{text}");
            assert!(text.contains("\"auto\": plain"), "{text}");
            assert!(text.contains("CPU"), "{text}");
        }
    }

    /// The resolution per device and dtype: auto is flash exactly where the kernel runs
    /// (bf16/f16 on CUDA at a head_dim with a kernel), plain elsewhere with the reason; plain is
    /// plain everywhere; flash is refused on the CPU and at a shape without a kernel, and runs
    /// plain (saying so) at f32.
    #[test]
    fn auto_is_flash_only_for_bf16_and_f16_on_cuda() {
        use super::resolve;
        use candle_core::DType;
        let at = |choice, cuda, dtype, head_dim| resolve(choice, cuda, dtype, head_dim, 8, 2);
        let attention = |r: Result<super::Resolved, String>| r.unwrap().attention;
        use PrefillAttention::{Auto, Flash, Plain};
        for dtype in [DType::BF16, DType::F16] {
            assert_eq!(attention(at(Auto, true, dtype, 64)), Flash, "{dtype:?}");
            assert_eq!(attention(at(Auto, false, dtype, 64)), Plain, "{dtype:?}");
            assert_eq!(attention(at(Flash, true, dtype, 64)), Flash, "{dtype:?}");
            assert_eq!(attention(at(Plain, true, dtype, 64)), Plain, "{dtype:?}");
        }
        for cuda in [true, false] {
            let r = at(Auto, cuda, DType::F32, 64).unwrap();
            assert_eq!(r.attention, Plain);
            assert!(r.note.unwrap().contains("auto"));
            assert_eq!(attention(at(Plain, cuda, DType::F32, 64)), Plain);
        }
        // No kernel for head_dim 96: auto runs plain and says why; flash is refused.
        let r = at(Auto, true, DType::BF16, 96).unwrap();
        assert_eq!(r.attention, Plain);
        assert!(r.note.unwrap().contains("head_dim"));
        assert!(at(Flash, true, DType::BF16, 96)
            .unwrap_err()
            .contains("head_dim"));
        // Flash on the CPU names the key; at f32 on CUDA it runs plain and says flash was asked.
        let err = at(Flash, false, DType::BF16, 64).unwrap_err();
        assert!(
            err.contains("prefill_attention = \"flash\"") && err.contains("CPU"),
            "{err}"
        );
        let r = at(Flash, true, DType::F32, 64).unwrap();
        assert_eq!(r.attention, Plain);
        assert!(r.note.unwrap().contains("\"flash\" asked"));
        // Nothing about auto is left in a resolution without auto.
        assert_eq!(at(Plain, true, DType::BF16, 64).unwrap().note, None);
        assert_eq!(at(Flash, true, DType::BF16, 64).unwrap().note, None);
    }

    /// The plan's resolution is the loader's: the own decoder's cells get one, the crate's
    /// models (one attention, no key) none.
    #[test]
    fn the_plan_resolves_own_decoders_only() {
        let mut own =
            DecoderSpec::resolve("llama", Some("llama-tiny"), None, 3, Implementation::Own)
                .unwrap();
        own.prefill_attention = PrefillAttention::Auto;
        let on = |cuda, p| {
            own.prefill_attention_for(p, cuda)
                .unwrap()
                .unwrap()
                .attention
        };
        assert_eq!(on(true, Precision::Bf16), PrefillAttention::Flash);
        assert_eq!(on(true, Precision::Fp16), PrefillAttention::Flash);
        assert_eq!(on(true, Precision::Fp32), PrefillAttention::Plain);
        assert_eq!(on(false, Precision::Bf16), PrefillAttention::Plain);
        let krate =
            DecoderSpec::resolve("llama", Some("llama-tiny"), None, 3, Implementation::Crate)
                .unwrap();
        assert_eq!(krate.prefill_attention_for(Precision::Bf16, true), Ok(None));
    }
}
