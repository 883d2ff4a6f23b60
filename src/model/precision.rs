//! Precisions on a model and a device: the dtypes and GGML formats they mean, and whether a cell
//! can run them (a shape the format cannot hold is skipped, a device that cannot run it fails).

use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{DType, Device, Module, Tensor};

use super::{encoder::Numerics, Family, ModelSpec, Preset};
use crate::config::{FloatPrecision, Precision, QuantFormat};

/// The float dtype of a precision (of everything but quantized linear weights).
pub fn dtype_for(precision: Precision) -> DType {
    float_dtype(precision.float())
}

/// The candle dtype of a float precision.
pub fn float_dtype(float: FloatPrecision) -> DType {
    match float {
        FloatPrecision::Fp32 => DType::F32,
        FloatPrecision::Fp16 => DType::F16,
        FloatPrecision::Bf16 => DType::BF16,
    }
}

pub fn ggml_for(format: QuantFormat) -> GgmlDType {
    match format {
        QuantFormat::Q8_0 => GgmlDType::Q8_0,
        QuantFormat::Q4_0 => GgmlDType::Q4_0,
        QuantFormat::Q4_1 => GgmlDType::Q4_1,
        QuantFormat::Q5_0 => GgmlDType::Q5_0,
        QuantFormat::Q5_1 => GgmlDType::Q5_1,
        QuantFormat::Q2K => GgmlDType::Q2K,
        QuantFormat::Q3K => GgmlDType::Q3K,
        QuantFormat::Q4K => GgmlDType::Q4K,
        QuantFormat::Q5K => GgmlDType::Q5K,
        QuantFormat::Q6K => GgmlDType::Q6K,
        QuantFormat::Q8K => GgmlDType::Q8K,
    }
}

pub fn numerics_for(precision: Precision) -> Numerics {
    Numerics {
        float: dtype_for(precision),
        quant: precision.quant().map(ggml_for),
        eight_bit: precision.eight_bit(),
    }
}

/// The name a record and a report give a float dtype.
pub fn dtype_name(dtype: DType) -> &'static str {
    match dtype {
        DType::F32 => "fp32",
        DType::F16 => "fp16",
        DType::BF16 => "bf16",
        DType::F64 => "fp64",
        _ => "other",
    }
}

/// Why a cell's precision cannot run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unsupported {
    /// The model cannot run it, on any device (its shapes do not fit the format, or its
    /// implementation has no such precision): the cell is skipped.
    Shape(String),
    /// This device or build cannot run it: the cell fails, since another machine could.
    Device(String),
}

/// Whether this GPU runs `precision` (an `fp8-*`) through cuBLASLt's FP8 GEMMs: E4M3 tensor cores
/// (compute capability 8.9 or later), an f16/bf16 output, every linear width a multiple of 16.
fn fp8_on_tensor_cores(
    precision: Precision,
    preset: &Preset,
    device: &Device,
) -> std::result::Result<(), String> {
    let name = precision.name();
    if !matches!(
        precision.float(),
        crate::config::FloatPrecision::Fp16 | crate::config::FloatPrecision::Bf16
    ) {
        return Err(format!(
            "{name}: cuBLASLt's FP8 GEMMs write f16 or bf16; use fp8-fp16 or fp8-bf16 on the GPU (fp8-fp32 runs as the CPU numerics reference with device.backend = \"cpu\")"
        ));
    }
    for (what, width) in [("dim", preset.dim), ("hidden_dim", preset.hidden_dim)] {
        if width % crate::ops::eight_bit::fp8_gemm::FP8_WIDTH_MULTIPLE != 0 {
            return Err(format!(
                "{name} needs linear layers whose input width is a multiple of {}; this model's {what} is {width}",
                crate::ops::eight_bit::fp8_gemm::FP8_WIDTH_MULTIPLE
            ));
        }
    }
    #[cfg(feature = "cuda")]
    if let Device::Cuda(cuda) = device {
        let (major, minor) = cuda
            .cuda_stream()
            .context()
            .compute_capability()
            .map_err(|e| format!("{name}: reading the GPU's compute capability failed: {e:?}"))?;
        if (major, minor) < (8, 9) {
            return Err(format!(
                "{name} needs FP8 tensor cores (compute capability 8.9 or later: Ada, Hopper); this GPU is {major}.{minor}: run int8-* here"
            ));
        }
    }
    let _ = device;
    Ok(())
}

/// Whether a cell of `spec` can run `precision` on `device`: the model's own refusals first
/// (an encoder's widths against the format's blocks, a decoder's implementation), then the device.
pub fn probe_cell(
    spec: &ModelSpec,
    precision: Precision,
    device: &Device,
) -> std::result::Result<(), Unsupported> {
    match &spec.family {
        Family::Encoder { preset, .. } => probe_precision(precision, preset, device),
        Family::Decoder(d) => {
            if let Some(why) = d.refuses(precision) {
                return Err(Unsupported::Shape(why));
            }
            probe_device(precision, device)
        }
    }
}

/// Checks that the device really runs this dtype (a matmul, a softmax, a cast), so an unsupported
/// precision becomes a skipped cell with the backend's own reason instead of a crash mid-window.
pub fn probe_precision(
    precision: Precision,
    preset: &Preset,
    device: &Device,
) -> std::result::Result<(), Unsupported> {
    if precision.eight_bit() == Some(crate::config::EightBit::Fp8E4M3) && device.is_cuda() {
        // Never run the f32 reference on a GPU and report its time as if it were fp8.
        fp8_on_tensor_cores(precision, preset, device).map_err(Unsupported::Device)?;
    }
    if let Some(format) = precision.quant() {
        // Every linear layer's input is `dim` or `hidden_dim` wide; GGML blocks run along it.
        let block = format.block_size();
        for (what, width) in [("dim", preset.dim), ("hidden_dim", preset.hidden_dim)] {
            if width % block != 0 {
                return Err(Unsupported::Shape(format!(
                    "{} needs linear layers whose input width is a multiple of {block}; this model's {what} is {width}",
                    precision.name()
                )));
            }
        }
    }
    probe_device(precision, device)
}

/// Whether the device runs the precision's GGML format (a small quantized matmul) and its float
/// dtype (a matmul, a softmax, a cast).
fn probe_device(precision: Precision, device: &Device) -> std::result::Result<(), Unsupported> {
    if let Some(format) = precision.quant() {
        let block = format.block_size();
        let run = || -> candle_core::Result<()> {
            let w = Tensor::ones((8, block), DType::F32, device)?;
            let q = QMatMul::from_qtensor(QTensor::quantize(&w, ggml_for(format))?)?;
            let x = Tensor::ones((4, block), dtype_for(precision), device)?;
            q.forward(&x)?
                .to_dtype(DType::F32)?
                .sum_all()?
                .to_scalar::<f32>()?;
            Ok(())
        };
        run().map_err(|e| {
            Unsupported::Device(format!(
                "{} is not supported on this device: {e}",
                precision.name()
            ))
        })?;
    }
    let dtype = dtype_for(precision);
    let run = || -> candle_core::Result<()> {
        let a = Tensor::ones((4, 8), dtype, device)?;
        let b = Tensor::ones((8, 4), dtype, device)?;
        let c = a.matmul(&b)?;
        let s = candle_nn::ops::softmax_last_dim(&c.to_dtype(DType::F32)?)?.to_dtype(dtype)?;
        s.gelu_erf()?
            .to_dtype(DType::F32)?
            .sum_all()?
            .to_scalar::<f32>()?;
        Ok(())
    };
    run().map_err(|e| {
        Unsupported::Device(format!(
            "{} is not supported on this device: {e}",
            precision.name()
        ))
    })
}
