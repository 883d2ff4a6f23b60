//! Launching a decode kernel with Programmatic Dependent Launch (`decode_kernels = "gemv-pdl"`):
//! `cuLaunchKernelEx` with CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION, so the kernel's
//! blocks may start while its predecessor on the stream is still running (its tail). Every kernel
//! launched this way calls `griddepcontrol.wait` (common.cuh's pdl_wait) before it reads anything
//! its predecessor writes or writes anything at all, and may do independent work before (the
//! GEMV prefetches its weights into L2). Stream capture keeps the attribute as a programmatic
//! edge between the two kernel nodes, so a captured step replays with the overlap.
//!
//! cudarc 0.19's launch builder has no launch attributes; its driver bindings do (sys), so this
//! is the one raw launch: the arguments are the kernel's parameters as addresses of their values.

use std::ffi::c_void;

use candle_core::cuda_backend::cudarc::driver::sys;
use candle_core::cuda_backend::cudarc::driver::{CudaFunction, CudaStream, LaunchConfig};
use candle_core::Result;

use super::Launch;

/// One kernel parameter's value, kept alive while the launch reads it.
pub(super) enum Param {
    /// A device address (a buffer, or 0 for an optional buffer left out).
    Ptr(u64),
    U32(u32),
    F32(f32),
}

/// Launches `func` on `stream` with `params` (in the kernel's order); with
/// [`Launch::Programmatic`] its start may overlap the previous kernel's tail.
///
/// # Safety
/// `params` must match the kernel's signature, and every address must be a live buffer of the
/// sizes the kernel reads and writes, on this stream.
pub(super) unsafe fn launch(
    func: &CudaFunction,
    stream: &CudaStream,
    cfg: LaunchConfig,
    launch: Launch,
    params: &[Param],
) -> Result<()> {
    let mut values: Vec<*mut c_void> = params
        .iter()
        .map(|p| match p {
            Param::Ptr(v) => v as *const u64 as *mut c_void,
            Param::U32(v) => v as *const u32 as *mut c_void,
            Param::F32(v) => v as *const f32 as *mut c_void,
        })
        .collect();
    // SAFETY: an all-zero attribute (id 0: ignored) is a valid value of this plain C struct.
    let mut attribute: sys::CUlaunchAttribute = unsafe { std::mem::zeroed() };
    attribute.id = sys::CUlaunchAttributeID::CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION;
    attribute.value.programmaticStreamSerializationAllowed = 1;
    let programmatic = launch == Launch::Programmatic;
    let config = sys::CUlaunchConfig {
        gridDimX: cfg.grid_dim.0,
        gridDimY: cfg.grid_dim.1,
        gridDimZ: cfg.grid_dim.2,
        blockDimX: cfg.block_dim.0,
        blockDimY: cfg.block_dim.1,
        blockDimZ: cfg.block_dim.2,
        sharedMemBytes: cfg.shared_mem_bytes,
        hStream: stream.cu_stream(),
        attrs: if programmatic {
            &mut attribute
        } else {
            std::ptr::null_mut()
        },
        numAttrs: programmatic as u32,
    };
    stream
        .context()
        .bind_to_thread()
        .map_err(|e| candle_core::Error::Msg(format!("binding the CUDA context: {e:?}")))?;
    // SAFETY: the caller vouches for the parameters; `values` and `attribute` outlive the call.
    let status = unsafe {
        sys::cuLaunchKernelEx(
            &config,
            func.cu_function(),
            values.as_mut_ptr(),
            std::ptr::null_mut(),
        )
    };
    if status != sys::CUresult::CUDA_SUCCESS {
        candle_core::bail!(
            "cuLaunchKernelEx ({}) failed: {status:?}",
            if programmatic {
                "programmatic stream serialization"
            } else {
                "plain"
            }
        );
    }
    Ok(())
}
