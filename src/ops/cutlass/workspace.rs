//! The device workspace of the stream-K kernels (gemm_streamk.cuh): partial accumulators and the
//! barriers that order their reduction. A CUDA graph capture cannot allocate it, and a captured
//! graph keeps the address it was given, so each stream gets one buffer, grown only at an eager
//! launch (every graph is captured after an eager warm-up, which launches each GEMM shape first)
//! and never freed while the process runs: a graph captured before a growth still points at the
//! old buffer, which stays live. GEMMs on one stream run one after another, so they share it;
//! the kernel zero-fills the barriers itself on every call.

use std::sync::Mutex;

use candle_core::cuda_backend::cudarc::driver::{result, sys};

/// ((context, stream), address, bytes) of every buffer allocated, the largest of a stream last.
/// The context is in the key because a freed stream's address may come back in another context,
/// where the old buffer is not valid.
type Key = (usize, usize);
static BUFFERS: Mutex<Vec<(Key, u64, usize)>> = Mutex::new(Vec::new());

/// A workspace of at least `bytes` for kernels on `stream`: the stream's buffer, or a larger one
/// allocated now if `stream` is not capturing (the CUDA context of `stream` must be current, as
/// it is at every launch).
///
/// # Safety
/// `stream` must be a live stream of the current context.
pub(super) unsafe fn at_least(
    bytes: usize,
    stream: sys::CUstream,
) -> candle_core::Result<(u64, usize)> {
    let context = result::ctx::get_current().map_err(candle_core::Error::wrap)?;
    let key = (context.map_or(0, |c| c as usize), stream as usize);
    let mut buffers = BUFFERS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(&(_, address, size)) = buffers.iter().rev().find(|b| b.0 == key) {
        if size >= bytes {
            return Ok((address, size));
        }
    }
    if bytes == 0 {
        return Ok((0, 0));
    }
    let capturing = result::stream::is_capturing(stream).map_err(candle_core::Error::wrap)?;
    if capturing != sys::CUstreamCaptureStatus::CU_STREAM_CAPTURE_STATUS_NONE {
        candle_core::bail!(
            "a stream-K GEMM needs {bytes} bytes of workspace, first asked for inside a CUDA graph capture, where none can be allocated (its shape was not launched eagerly first)"
        );
    }
    // Round up to 1 MiB so that nearby shapes share one allocation.
    let size = bytes.div_ceil(1 << 20) << 20;
    let address = result::malloc_sync(size).map_err(|e| {
        candle_core::Error::Msg(format!(
            "allocating {size} bytes of stream-K workspace: {e} (the GPU's memory is full: a smaller batch or device.gemm_tactics = \"rule\" avoids it)"
        ))
    })?;
    buffers.push((key, address, size));
    Ok((address, size))
}
