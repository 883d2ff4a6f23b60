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
