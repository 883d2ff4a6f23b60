//! Where weights come from: seeded random tensors in the real architecture (`random.rs`), or a
//! local Hugging Face folder (config.json + model.safetensors). Nothing is ever downloaded.

pub mod random;

use std::path::Path;

use anyhow::{Context, Result};

/// The header of a safetensors file, read and bounded: a wrong file is named as such before
/// anything maps it.
pub fn safetensors_header(path: &Path) -> Result<Vec<u8>> {
    use std::io::Read;
    let mut f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
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

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
