//! Cold isolated units (`protocol.layer_isolation = "cold"`): how many copies of a unit's weights
//! its calls rotate through, from the unit's bytes and the device's last-level cache (the GPU's
//! L2 from the device's attributes; the CPU's largest cache from sysfs), never a constant.

use anyhow::{bail, Context, Result};

use crate::results::ColdCopies;

/// The most copies one unit rotates through: on CUDA a loop runs a multiple of them (one graph
/// of K calls), so more would make a capture of tens of thousands of nodes. A unit so small that
/// it needs more (a tiny test model's block against a CPU's 300 MB cache) runs capped, and its
/// record says so ([`describe`]: copies x bytes short of 2x the cache).
pub const MAX_COLD_COPIES: u32 = 256;

/// The copies a unit of `copy_bytes` rotates through: the fewest whose bytes exceed twice the
/// cache, so that between two calls on one copy more than the cache has streamed through it.
pub fn copies_for(copy_bytes: u64, cache_bytes: u64) -> ColdCopies {
    let needed = (2 * cache_bytes) / copy_bytes.max(1) + 1;
    ColdCopies {
        copies: needed.min(u64::from(MAX_COLD_COPIES)) as u32,
        copy_bytes,
        cache_bytes,
    }
}

/// K for a cold unit on CUDA: the warm K rounded up to a whole number of rotations, so that each
/// loop (one graph replay) reads every copy and the next loop starts where this one began.
pub fn calls_per_loop(warm_k: u32, copies: u32) -> u32 {
    copies * warm_k.max(1).div_ceil(copies.max(1))
}

/// For the record: "cold: 14 copies x 7.6 MB = 106 MB, > 2x the 52.4 MB cache".
pub fn describe(c: &ColdCopies) -> String {
    let mb = |b: u64| b as f64 / 1e6;
    let total = u64::from(c.copies) * c.copy_bytes;
    let against = if total > 2 * c.cache_bytes {
        ">"
    } else {
        "short of (capped)"
    };
    format!(
        "cold: {} copies x {:.3} MB = {:.1} MB, {against} 2x the {:.1} MB cache",
        c.copies,
        mb(c.copy_bytes),
        mb(total),
        mb(c.cache_bytes)
    )
}

/// The device's last-level cache in bytes: the GPU's L2, the CPU's largest cache.
pub fn last_level_cache_bytes(device: &candle_core::Device) -> Result<u64> {
    let bytes = match device {
        #[cfg(feature = "cuda")]
        candle_core::Device::Cuda(dev) => {
            use candle_core::cuda_backend::cudarc::driver::sys::CUdevice_attribute;
            let l2 = dev
                .cuda_stream()
                .context()
                .attribute(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_L2_CACHE_SIZE)
                .map_err(|e| anyhow::anyhow!("the GPU's L2 size: {e:?}"))?;
            u64::try_from(l2).unwrap_or(0)
        }
        candle_core::Device::Cpu => cpu_cache_bytes(std::path::Path::new(
            "/sys/devices/system/cpu/cpu0/cache",
        ))?,
        #[allow(unreachable_patterns)]
        other => bail!("protocol.layer_isolation = \"cold\": no cache size is known for {other:?}; set \"warm\""),
    };
    if bytes == 0 {
        bail!("protocol.layer_isolation = \"cold\": the device reports a cache of 0 bytes; set \"warm\"");
    }
    Ok(bytes)
}

/// The largest `size` under `dir`'s `index*/` (Linux sysfs: "32K", "2048K", "300M").
fn cpu_cache_bytes(dir: &std::path::Path) -> Result<u64> {
    let hint = "protocol.layer_isolation = \"cold\" needs this CPU's cache size; set \"warm\"";
    let mut largest = 0;
    let entries = std::fs::read_dir(dir).with_context(|| format!("{}: {hint}", dir.display()))?;
    for entry in entries.flatten() {
        if !entry.file_name().to_string_lossy().starts_with("index") {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(entry.path().join("size")) else {
            continue;
        };
        largest = largest.max(
            parse_size(text.trim())
                .with_context(|| format!("{}/size = {text:?}: {hint}", entry.path().display()))?,
        );
    }
    if largest == 0 {
        bail!("{}: no cache size found: {hint}", dir.display());
    }
    Ok(largest)
}

fn parse_size(text: &str) -> Result<u64> {
    let (digits, unit) = match text.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => text.split_at(i),
        None => (text, ""),
    };
    let n: u64 = digits.parse().context("not a size")?;
    let scale = match unit {
        "" => 1,
        "K" => 1 << 10,
        "M" => 1 << 20,
        "G" => 1 << 30,
        _ => bail!("unknown unit {unit:?}"),
    };
    Ok(n * scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_exceed_twice_the_cache_or_say_they_are_capped() {
        // A SmolLM2-135M block (7.1 MB of weights, 0.49 MB of cache) against an H100's L2.
        let l2 = 52_428_800;
        let c = copies_for(7_570_000, l2);
        assert_eq!(c.copies, 14);
        assert!(u64::from(c.copies) * c.copy_bytes > 2 * l2);
        assert!(u64::from(c.copies - 1) * c.copy_bytes <= 2 * l2 + c.copy_bytes);
        assert!(describe(&c).contains("> 2x"), "{}", describe(&c));
        // The tied head (56.6 MB): two copies.
        assert_eq!(copies_for(56_623_104, l2).copies, 2);
        // Larger than twice the cache alone: one, a call streams the cache out itself.
        assert_eq!(copies_for(300_000_000, l2).copies, 1);
        let tiny = copies_for(10_000, 314_572_800);
        assert_eq!(tiny.copies, MAX_COLD_COPIES);
        assert!(describe(&tiny).contains("short of"), "{}", describe(&tiny));
    }

    #[test]
    fn a_cold_loop_is_whole_rotations() {
        assert_eq!(calls_per_loop(2, 14), 14);
        assert_eq!(calls_per_loop(15, 14), 28);
        assert_eq!(calls_per_loop(6, 2), 6);
        assert_eq!(calls_per_loop(7, 2), 8);
        assert_eq!(calls_per_loop(0, 1), 1);
    }

    #[test]
    fn cache_sizes_parse_from_sysfs_text_and_refuse_garbage() {
        assert_eq!(parse_size("48K").unwrap(), 48 << 10);
        assert_eq!(parse_size("300M").unwrap(), 300 << 20);
        assert_eq!(parse_size("1024").unwrap(), 1024);
        assert!(parse_size("12Q").is_err());
        assert!(parse_size("K").is_err());
        let dir = std::env::temp_dir().join(format!("runner-cache-{}", std::process::id()));
        for (i, size) in ["32K", "2048K", "64K"].iter().enumerate() {
            let d = dir.join(format!("index{i}"));
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("size"), format!("{size}\n")).unwrap();
        }
        assert_eq!(cpu_cache_bytes(&dir).unwrap(), 2048 << 10);
        std::fs::write(dir.join("index1/size"), "lots\n").unwrap();
        let err = format!("{:#}", cpu_cache_bytes(&dir).unwrap_err());
        assert!(err.contains("index1/size") && err.contains("warm"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
        let missing = format!("{:#}", cpu_cache_bytes(&dir).unwrap_err());
        assert!(missing.contains("warm"), "{missing}");
    }
}
