//! This device's rates, measured in a moment before a run's first cell, that the estimate prices
//! cells with (`estimate.rs`): a matmul's FLOP/s and a one-row matmul's weight bytes per second in
//! each float dtype, and how long a random-weight decoder's weights take to build per value.

use std::time::Instant;

use anyhow::Result;
use candle_core::{Device, Tensor};

use crate::config::FloatPrecision;
use crate::model::float_dtype as dtype_of;
use crate::model::weights::random::RandomBackend;

/// Bytes of weights per second a [1, 2048] x [2048, 2048] product reads in `float` on `device`
/// (a decode step is such products at batch 1), timed for about 0.1 s.
pub fn weight_read_rate(device: &Device, float: FloatPrecision) -> Result<f64> {
    let dtype = dtype_of(float);
    let dim = 2048usize;
    let x = Tensor::randn(0f32, 1.0, (1, dim), device)?.to_dtype(dtype)?;
    let w = Tensor::randn(0f32, 1.0, (dim, dim), device)?.to_dtype(dtype)?;
    x.matmul(&w)?;
    device.synchronize()?;
    let start = Instant::now();
    let mut runs = 0u32;
    while runs < 2 || start.elapsed().as_secs_f64() < 0.1 {
        x.matmul(&w)?;
        device.synchronize()?;
        runs += 1;
    }
    let bytes = (dim * dim * dtype.size_in_bytes()) as f64 * f64::from(runs);
    Ok(bytes / start.elapsed().as_secs_f64())
}

/// This device's matmul rate in `float`, FLOP/s: a [256, dim] x [dim, dim] product timed for
/// about 0.1 s after one untimed run.
pub fn matmul_rate(device: &Device, float: FloatPrecision, dim: usize) -> Result<f64> {
    let dtype = dtype_of(float);
    let dim = dim.clamp(64, 4096);
    let a = Tensor::randn(0f32, 1.0, (256, dim), device)?.to_dtype(dtype)?;
    let b = Tensor::randn(0f32, 1.0, (dim, dim), device)?.to_dtype(dtype)?;
    a.matmul(&b)?;
    device.synchronize()?;
    let start = Instant::now();
    let mut runs = 0u32;
    while runs < 2 || start.elapsed().as_secs_f64() < 0.1 {
        a.matmul(&b)?;
        device.synchronize()?;
        runs += 1;
    }
    let flops = 2.0 * 256.0 * (dim * dim) as f64 * f64::from(runs);
    Ok(flops / start.elapsed().as_secs_f64())
}

/// Seconds per value a random-weight decoder's weights take to build in `float` on `device`, as
/// loading builds them (each tensor drawn on the host from its seeded streams in parallel chunks,
/// converted to the dtype, copied to the device): a [1024, 4096] weight through the same
/// backend, timed once after one untimed draw. The estimate priced no load before: neither the
/// cell's model nor, first for its model, the fp32 reference's (1.24 B values each for
/// Llama-3.2-1B), and session 8's three Llama-family b8 cells, estimated at 27 s, took over 30 s
/// for the first alone.
pub fn random_weights_rate(device: &Device, float: FloatPrecision) -> Result<f64> {
    use candle_nn::var_builder::SimpleBackend;
    let backend = RandomBackend {
        seed: 0,
        std: 0.02,
        tied: false,
    };
    let (rows, cols) = (1024usize, 4096usize);
    let draw = || -> Result<()> {
        backend.get(
            (rows, cols).into(),
            "estimate.weight",
            candle_nn::Init::Const(0.0),
            dtype_of(float),
            device,
        )?;
        device.synchronize()?;
        Ok(())
    };
    draw()?;
    let start = Instant::now();
    draw()?;
    Ok(start.elapsed().as_secs_f64() / (rows * cols) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_matmul_rate_is_measured_on_the_cpu() {
        let r = matmul_rate(&Device::Cpu, FloatPrecision::Fp32, 128).unwrap();
        assert!(r > 1e6 && r.is_finite(), "{r}");
    }

    #[test]
    fn building_random_weights_is_timed_per_value() {
        // A value takes more than a picosecond and less than a millisecond on any host.
        for float in [FloatPrecision::Fp32, FloatPrecision::Bf16] {
            let s = random_weights_rate(&Device::Cpu, float).unwrap();
            assert!(s > 1e-12 && s < 1e-3, "{float:?}: {s}");
        }
    }
}
