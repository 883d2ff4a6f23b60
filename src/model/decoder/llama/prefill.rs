//! The prefill's attention (`prefill_attention`): candle's plain ops (f32 scores over K and V
//! repeated for every query head), or the runner's flash kernel over the KV cache
//! (src/ops/prefill.rs), and what the record says ran.

use candle_core::Result;

use super::LlamaFamily;
use crate::config::PrefillAttention;
use crate::ops::prefill;

const PLAIN: &str = "plain: candle's f32 matmul of the queries against K and V repeated for every query head (repeat_kv), the (len, start + len) causal mask, softmax, matmul";

impl LlamaFamily {
    /// Every layer's prefill attention. `flash` on the CPU (or at a head_dim without a kernel) is
    /// an error naming the key; an f32 model runs the plain path (the kernel is bf16/f16) and its
    /// record says so.
    pub fn set_prefill_attention(&mut self, choice: PrefillAttention) -> Result<()> {
        let cfg = &self.cfg;
        let flash = match choice {
            PrefillAttention::Plain => false,
            PrefillAttention::Flash => {
                if !(cfg!(feature = "cuda") && self.device.is_cuda()) {
                    candle_core::bail!(
                        "prefill_attention = \"flash\": the flash prefill attention is a CUDA kernel and this cell runs on the CPU; leave the key out (plain) to run here"
                    );
                }
                let float = matches!(
                    self.dtype,
                    candle_core::DType::BF16 | candle_core::DType::F16
                );
                if float {
                    if let Some(why) =
                        prefill::unsupported(cfg.head_dim, cfg.heads, cfg.kv_heads, self.dtype)
                    {
                        candle_core::bail!("prefill_attention = \"flash\": {why}");
                    }
                }
                float
            }
        };
        for block in &mut self.blocks {
            block.attention.flash_prefill = flash;
        }
        let text = match (choice, flash) {
            (_, true) => format!("flash ({})", prefill::FLASH_DESCRIPTION),
            (PrefillAttention::Flash, false) => format!(
                "{PLAIN} (prefill_attention = \"flash\" asked; the kernel is bf16/f16 and this model is {:?})",
                self.dtype
            ),
            _ => PLAIN.to_string(),
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
}
