//! Which residual + layer norm kernel a launch picks: `device.pair_norms` (the f16/bf16 rows in
//! pairs, src/ops/kernels/norm_row.cuh) or the kernels they replace.

use candle_core::DType;

static PAIR_NORMS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// `device.pair_norms` for the norms launched from now on (each cell sets it before it loads
/// its model; off until then). The GPU checks (examples/int8_check/pairs.rs) switch it to
/// compare the pair kernels with the ones they replace, bit for bit, in one process.
pub fn use_pair_norms(on: bool) {
    PAIR_NORMS.store(on, std::sync::atomic::Ordering::Relaxed);
}

/// The suffix of the residual + layer norm kernel for rows of `cols` values (`vec`: every row
/// and input start allows 16-byte loads): with [`use_pair_norms`] on, "_h2" for f16/bf16 rows
/// of up to 1024 values (src/ops/kernels/norm_row.cuh: the same values in fewer instructions);
/// "_vec" for other aligned rows, "" for the one-value kernel.
pub fn norm_variant(dtype: DType, cols: usize, vec: bool) -> &'static str {
    let pairs = PAIR_NORMS.load(std::sync::atomic::Ordering::Relaxed);
    match (vec, dtype) {
        (true, DType::F16 | DType::BF16) if pairs && cols <= 1024 => "_h2",
        (true, _) => "_vec",
        (false, _) => "",
    }
}

/// For the record, what [`norm_variant`] adds to a residual + layer norm of aligned rows of
/// `cols` values: "" for the kernels that ran before the pair ones.
pub fn pair_norms_note(dtype: DType, cols: usize) -> &'static str {
    match norm_variant(dtype, cols, true) {
        "_h2" => "; the residual add, row and normalized values in 16-bit pairs (norm_row.cuh, device.pair_norms)",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sixteen_bit_rows_up_to_1024_take_the_pair_kernels_when_asked_and_the_record_says_so() {
        // Off until a cell sets it (device.pair_norms, resolved); the only test that switches it.
        assert_eq!(norm_variant(DType::F16, 768, true), "_vec");
        assert_eq!(pair_norms_note(DType::F16, 768), "");
        use_pair_norms(true);
        assert_eq!(norm_variant(DType::F16, 768, true), "_h2");
        assert_eq!(norm_variant(DType::BF16, 1024, true), "_h2");
        assert!(pair_norms_note(DType::BF16, 768).contains("device.pair_norms"));
        // Wider rows, f32 and unaligned rows keep the kernels they had, and say nothing more.
        assert_eq!(norm_variant(DType::F16, 1032, true), "_vec");
        assert_eq!(norm_variant(DType::F32, 768, true), "_vec");
        assert_eq!(norm_variant(DType::F16, 768, false), "");
        assert_eq!(pair_norms_note(DType::F32, 768), "");
        assert_eq!(pair_norms_note(DType::F16, 1032), "");
        use_pair_norms(false);
    }
}
