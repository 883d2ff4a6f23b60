//! W8A8 numerics (`int8-<float>`, `fp8-<float>`), without any kernel: the per-row symmetric
//! quantization every 8-bit path shares, in f32 arithmetic. The tensor-core kernels
//! (`ops::eight_bit`) are checked against it, and on the CPU it is what runs.
//!
//! Rounding: int8 rounds half away from zero and clamps to [-127, 127] (symmetric: no -128);
//! E4M3 rounds to nearest even (the float8 crate's conversion, as the hardware's
//! `cvt.rn.satfinite.e4m3x2.f32`) after clamping to its largest finite value, 448.

use candle_core::{DType, Result, Tensor, D};

use crate::config::EightBit;

/// Symmetric per-row quantization of a (rows, k) f32 tensor: the row's largest magnitude maps to
/// the format's largest value. Returns the quantized values (as f32) and the (rows, 1) scales; an
/// all-zero row gets scale 1 (its values are 0 either way), never a division by zero.
pub fn quantize_rows(x: &Tensor, format: EightBit) -> Result<(Tensor, Tensor)> {
    let absmax = x.abs()?.max_keepdim(D::Minus1)?;
    let zero = absmax.eq(0f64)?;
    let scale = zero.where_cond(
        &absmax.ones_like()?,
        &(&absmax / f64::from(format.max_value()))?,
    )?;
    // max ignores NaN: a row holding one gets a NaN scale, so the NaN reaches the output instead
    // of being clamped to a finite 8-bit value.
    let nan_rows = x.ne(x)?.max_keepdim(D::Minus1)?;
    let scale = nan_rows.where_cond(&(scale.ones_like()? * f64::NAN)?, &scale)?;
    // Times the reciprocal, as the tensor-core kernels do (one division per row, not per value):
    // the same values on both.
    let scaled = x.broadcast_mul(&scale.recip()?)?;
    let limit = f64::from(format.max_value());
    let q = match format {
        EightBit::Int8 => scaled.round()?.clamp(-limit, limit)?,
        EightBit::Fp8E4M3 => scaled
            .clamp(-limit, limit)?
            .to_dtype(DType::F8E4M3)?
            .to_dtype(DType::F32)?,
    };
    Ok((q, scale))
}

/// Static per-column quantization (`device.ffn_activation_scales = "static"`): `x` (rows, n) f32
/// times `inverse` (1, n) (1 / each column's step), rounded as [`quantize_rows`] rounds: int8
/// half away from zero, clamped to [-127, 127]; E4M3 clamped to 448, then to nearest even. Values
/// past the step's range saturate. Returns the codes as f32.
pub fn quantize_columns(x: &Tensor, inverse: &Tensor, format: EightBit) -> Result<Tensor> {
    let scaled = x.broadcast_mul(inverse)?;
    let limit = f64::from(format.max_value());
    match format {
        EightBit::Int8 => scaled.round()?.clamp(-limit, limit),
        EightBit::Fp8E4M3 => scaled
            .clamp(-limit, limit)?
            .to_dtype(DType::F8E4M3)?
            .to_dtype(DType::F32),
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Tensor};

    use super::*;

    fn values(t: &Tensor) -> Vec<f32> {
        t.flatten_all().unwrap().to_vec1().unwrap()
    }

    #[test]
    fn int8_rows_map_their_largest_magnitude_to_127_and_hold_integers() {
        let x = Tensor::from_vec(
            vec![
                0.5f32, -2.0, 1.1, 0.26, 0.0, 0.0, 0.0, 0.0, 3.0, 1.4, -0.75, 0.01,
            ],
            (3, 4),
            &Device::Cpu,
        )
        .unwrap();
        let (q, scale) = quantize_rows(&x, EightBit::Int8).unwrap();
        let (q, scale) = (values(&q), values(&scale));
        assert_eq!(scale, vec![2.0 / 127.0, 1.0, 3.0 / 127.0]);
        // Row 0: 0.5 / (2/127) = 31.75 -> 32; -2 -> -127; 1.1 -> 69.85 -> 70; 0.26 -> 16.51 -> 17.
        assert_eq!(&q[..4], &[32.0, -127.0, 70.0, 17.0]);
        assert_eq!(&q[4..8], &[0.0; 4], "an all-zero row stays zero");
        assert_eq!(&q[8..], &[127.0, 59.0, -32.0, 0.0]);
        assert!(q.iter().all(|v| v.fract() == 0.0 && v.abs() <= 127.0));
    }

    #[test]
    fn e4m3_rounds_to_nearest_even_representable_values_within_448() {
        // One row whose largest magnitude is 448, so the scale is 1 and values keep their size.
        let x = Tensor::from_vec(
            vec![
                448.0f32,
                1.0625,
                1.1875,
                300.0,
                -0.3,
                0.001953125,
                17.0,
                -448.0,
            ],
            (1, 8),
            &Device::Cpu,
        )
        .unwrap();
        let (q, scale) = quantize_rows(&x, EightBit::Fp8E4M3).unwrap();
        assert_eq!(values(&scale), vec![1.0]);
        // 1.0625 is halfway between 1.0 and 1.125: to the even mantissa, 1.0; 1.1875 -> 1.25;
        // 300 between 288 and 320 -> 288; -0.3 -> -0.3125 (spacing 1/32 in [0.25, 0.5));
        // 2^-9 is E4M3's smallest subnormal; 17 -> 16 (spacing 2, halfway to the even 16).
        assert_eq!(
            values(&q),
            vec![448.0, 1.0, 1.25, 288.0, -0.3125, 0.001953125, 16.0, -448.0]
        );
    }

    #[test]
    fn columns_quantize_with_their_own_step_and_saturate_past_it() {
        let x = Tensor::from_vec(vec![0.5f32, -3.0, 1.25, 100.0], (2, 2), &Device::Cpu).unwrap();
        // Steps 1/4 and 1/2: inverses 4 and 2.
        let inverse = Tensor::from_vec(vec![4.0f32, 2.0], (1, 2), &Device::Cpu).unwrap();
        let q = values(&quantize_columns(&x, &inverse, EightBit::Int8).unwrap());
        // 0.5 * 4 = 2; -3 * 2 = -6; 1.25 * 4 = 5; 100 * 2 = 200 -> saturates at 127.
        assert_eq!(q, vec![2.0, -6.0, 5.0, 127.0]);
        let q = values(&quantize_columns(&x, &inverse, EightBit::Fp8E4M3).unwrap());
        // 200 is between 192 and 224 (spacing 32): nearest 192.
        assert_eq!(q, vec![2.0, -6.0, 5.0, 192.0]);
        let big = Tensor::from_vec(vec![1000.0f32, -1000.0], (1, 2), &Device::Cpu).unwrap();
        let q = values(&quantize_columns(&big, &inverse, EightBit::Fp8E4M3).unwrap());
        assert_eq!(
            q,
            vec![448.0, -448.0],
            "clamped to E4M3's largest finite value"
        );
    }

    #[test]
    fn a_nan_input_reaches_the_output_instead_of_becoming_a_finite_value() {
        let x = Tensor::from_vec(vec![1.0f32, f32::NAN, 2.0, 3.0], (2, 2), &Device::Cpu).unwrap();
        for format in [EightBit::Int8, EightBit::Fp8E4M3] {
            let (q, scale) = quantize_rows(&x, format).unwrap();
            let (q, scale) = (values(&q), values(&scale));
            assert!(
                scale[0].is_nan() && q[..2].iter().all(|v| v.is_nan()),
                "{format:?}"
            );
            assert!(scale[1].is_finite() && q[2..].iter().all(|v| v.is_finite()));
        }
    }
}
