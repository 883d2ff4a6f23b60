//! Where weights come from: seeded random tensors in the real architecture (`random.rs`), or a
//! local Hugging Face folder (config.json + model.safetensors). Nothing is ever downloaded.

pub mod gguf;
pub mod random;

use std::path::Path;

use anyhow::{Context, Result};

/// The header of a safetensors file, read and bounded: a wrong file is named as such before
/// anything maps it. The file must be a regular file (a FIFO would block, a device never end).
pub fn safetensors_header(path: &Path) -> Result<Vec<u8>> {
    use std::io::Read;
    let mut f = crate::files::open_regular(path, "weights file")?
        .with_context(|| format!("{}: no such file", path.display()))?;
    let mut len = [0u8; 8];
    f.read_exact(&mut len)
        .with_context(|| format!("{}: not a safetensors file", path.display()))?;
    let n = u64::from_le_bytes(len);
    anyhow::ensure!(
        n < 100 << 20,
        "{}: implausible safetensors header size {n}",
        path.display()
    );
    let mut header = vec![0u8; n as usize];
    f.read_exact(&mut header)
        .with_context(|| format!("{}: truncated safetensors header", path.display()))?;
    Ok(header)
}

/// One tensor of a safetensors file, as its header declares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorEntry {
    pub dtype: String,
    pub shape: Vec<usize>,
}

/// Bytes per element of a safetensors dtype.
fn dtype_bytes(dtype: &str) -> Option<u64> {
    Some(match dtype {
        "F64" | "I64" | "U64" => 8,
        "F32" | "I32" | "U32" => 4,
        "F16" | "BF16" | "I16" | "U16" => 2,
        "I8" | "U8" | "BOOL" | "F8_E4M3" | "F8_E5M2" => 1,
        _ => return None,
    })
}

/// Every tensor a safetensors file declares, with the header checked as a loader would check it
/// (each shape of non-negative sizes whose product fits, data offsets that hold exactly that
/// many elements of the dtype, inside the file), so that a damaged or hostile header fails the
/// preparation of a run (exit 2) instead of every cell.
pub fn safetensors_index(path: &Path) -> Result<std::collections::BTreeMap<String, TensorEntry>> {
    let header = safetensors_header(path)?;
    let file_len = std::fs::metadata(path)
        .with_context(|| format!("reading {}", path.display()))?
        .len();
    let data_len = file_len.saturating_sub(8 + header.len() as u64);
    let map: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(&header)
        .with_context(|| format!("{}: unreadable safetensors header", path.display()))?;
    let mut out = std::collections::BTreeMap::new();
    for (name, t) in map.iter().filter(|(n, _)| *n != "__metadata__") {
        let bad = |why: String| {
            anyhow::anyhow!(
                "{}: tensor {name:?}: {why}: the header is damaged (export the checkpoint again)",
                path.display()
            )
        };
        let dtype = t
            .get("dtype")
            .and_then(|d| d.as_str())
            .ok_or_else(|| bad("no dtype".into()))?;
        let size = dtype_bytes(dtype).ok_or_else(|| bad(format!("unknown dtype {dtype:?}")))?;
        let shape_json = t
            .get("shape")
            .and_then(|s| s.as_array())
            .ok_or_else(|| bad("no shape".into()))?;
        let shape: Vec<u64> = shape_json
            .iter()
            .map(|d| d.as_u64())
            .collect::<Option<_>>()
            .ok_or_else(|| bad(format!("shape {shape_json:?} is not a list of sizes >= 0")))?;
        let elements = shape
            .iter()
            .try_fold(1u64, |n, &d| n.checked_mul(d))
            .filter(|&n| n.checked_mul(size).is_some())
            .ok_or_else(|| bad(format!("shape {shape:?} overflows")))?;
        let offsets: Vec<u64> = t
            .get("data_offsets")
            .and_then(|o| o.as_array())
            .and_then(|o| o.iter().map(|v| v.as_u64()).collect::<Option<Vec<_>>>())
            .filter(|o| o.len() == 2)
            .ok_or_else(|| bad("data_offsets is not [begin, end]".into()))?;
        let (begin, end) = (offsets[0], offsets[1]);
        if begin > end || end > data_len || end - begin != elements * size {
            return Err(bad(format!(
                "data_offsets [{begin}, {end}] do not hold {elements} {dtype} element(s) within the file's {data_len} data bytes"
            )));
        }
        let shape = shape
            .iter()
            .map(|&d| usize::try_from(d))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|_| bad(format!("shape {shape:?} does not fit this machine")))?;
        out.insert(
            name.clone(),
            TensorEntry {
                dtype: dtype.to_string(),
                shape,
            },
        );
    }
    Ok(out)
}

/// Refuses a checkpoint with tensors that are not floating point: the runner casts weights to
/// the cell's float dtype, and an integer tensor (a quantized export, token ids) would be cast
/// into nonsense without a word.
pub fn check_float_tensors(
    path: &Path,
    index: &std::collections::BTreeMap<String, TensorEntry>,
) -> Result<()> {
    let mut bad: Vec<String> = index
        .iter()
        // position_ids is a buffer of integers some exports carry, not a weight: never loaded.
        .filter(|(name, _)| !name.ends_with("position_ids"))
        .filter(|(_, t)| !matches!(t.dtype.as_str(), "F16" | "BF16" | "F32" | "F64"))
        .map(|(name, t)| format!("{name} ({})", t.dtype))
        .collect();
    if bad.is_empty() {
        return Ok(());
    }
    bad.sort();
    let more = bad.len().saturating_sub(3);
    anyhow::bail!(
        "{}: tensor(s) {}{} are not floating point (F16, BF16, F32 or F64): the runner would cast them silently; export the checkpoint in a float dtype",
        path.display(),
        bad[..bad.len().min(3)].join(", "),
        if more > 0 { format!(" and {more} more") } else { String::new() }
    )
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
