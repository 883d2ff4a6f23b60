//! Seeded random weights: every tensor has its own stream derived from (seed, name), so its values
//! depend on neither the order tensors are made in, nor the device, nor the precision.

use anyhow::Result;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};
use sha2::{Digest, Sha256};

/// `count` values drawn from normal(0, std) on the stream of (seed, name).
pub fn normal_values(seed: u64, name: &str, count: usize, std: f32) -> Result<Vec<f32>> {
    let normal = Normal::new(0f32, std)?;
    let mut rng = ChaCha8Rng::from_seed(stream_seed(seed, name));
    Ok((0..count).map(|_| normal.sample(&mut rng)).collect())
}

fn stream_seed(seed: u64, name: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(seed.to_le_bytes());
    h.update(name.as_bytes());
    h.finalize().into()
}

/// Values per independently seeded chunk of a tensor: large tensors are drawn in parallel, each
/// chunk on its own stream of (seed, name, chunk), so the values do not depend on thread count.
const CHUNK: usize = 1 << 20;

/// `count` values from normal(0, std), in parallel chunks (see [`CHUNK`]).
pub fn normal_values_par(seed: u64, name: &str, count: usize, std: f32) -> Result<Vec<f32>> {
    use rayon::prelude::*;
    let normal = Normal::new(0f32, std)?;
    let mut out = vec![0f32; count];
    out.par_chunks_mut(CHUNK)
        .enumerate()
        .for_each(|(chunk, values)| {
            let mut rng = ChaCha8Rng::from_seed(stream_seed(seed, &format!("{name}#{chunk}")));
            for v in values {
                *v = normal.sample(&mut rng);
            }
        });
    Ok(out)
}

/// A candle `VarBuilder` backend that answers any (shape, name) a model asks for with seeded
/// random values, initialised as Hugging Face does: biases 0, one-dimensional scales (norms) 1,
/// every other tensor normal(0, `std`). No table of shapes: the model's own constructor asks for
/// what it needs. `tied`: the output projection shares the embeddings (`tie_word_embeddings`),
/// so `contains_tensor("lm_head.weight")` says no, as a tied checkpoint would.
pub struct RandomBackend {
    pub seed: u64,
    pub std: f32,
    pub tied: bool,
}

impl candle_nn::var_builder::SimpleBackend for RandomBackend {
    fn get(
        &self,
        shape: candle_core::Shape,
        name: &str,
        _hint: candle_nn::Init,
        dtype: candle_core::DType,
        device: &candle_core::Device,
    ) -> candle_core::Result<candle_core::Tensor> {
        let count = shape.elem_count();
        let values = if name.ends_with("bias") {
            vec![0f32; count]
        } else if shape.rank() <= 1 {
            vec![1f32; count]
        } else {
            normal_values_par(self.seed, name, count, self.std).map_err(candle_core::Error::wrap)?
        };
        candle_core::Tensor::from_vec(values, shape, &candle_core::Device::Cpu)?
            .to_dtype(dtype)?
            .to_device(device)
    }

    fn get_unchecked(
        &self,
        name: &str,
        _dtype: candle_core::DType,
        _device: &candle_core::Device,
    ) -> candle_core::Result<candle_core::Tensor> {
        candle_core::bail!(
            "random weights give a tensor only for a known shape; the model asked for {name} without one"
        )
    }

    fn contains_tensor(&self, name: &str) -> bool {
        !(self.tied && name.ends_with("lm_head.weight"))
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{DType, Device};
    use candle_nn::VarBuilder;

    use super::*;

    #[test]
    fn random_weights_answer_any_shape_seeded_by_name_and_initialised_by_kind() {
        let vb = |seed| {
            VarBuilder::from_backend(
                Box::new(RandomBackend {
                    seed,
                    std: 0.02,
                    tied: true,
                }),
                DType::F32,
                Device::Cpu,
            )
        };
        let values = |vb: &VarBuilder, name: &str| -> Vec<f32> {
            vb.get((3, CHUNK + 5), name)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap()
        };
        let a = values(&vb(1), "model.layers.0.mlp.up_proj.weight");
        assert_eq!(a, values(&vb(1), "model.layers.0.mlp.up_proj.weight"));
        assert_ne!(a, values(&vb(2), "model.layers.0.mlp.up_proj.weight"));
        assert_ne!(a, values(&vb(1), "model.layers.1.mlp.up_proj.weight"));
        let std = (a.iter().map(|x| x * x).sum::<f32>() / a.len() as f32).sqrt();
        assert!((std - 0.02).abs() < 0.001, "std {std}");
        let norm: Vec<f32> = vb(1)
            .get(4, "model.norm.weight")
            .unwrap()
            .to_vec1()
            .unwrap();
        assert_eq!(norm, vec![1.0; 4]);
        let bias: Vec<f32> = vb(1).get(4, "q_proj.bias").unwrap().to_vec1().unwrap();
        assert_eq!(bias, vec![0.0; 4]);
        assert!(!vb(1).contains_tensor("lm_head.weight"));
        assert!(vb(1).contains_tensor("model.embed_tokens.weight"));
    }
}
