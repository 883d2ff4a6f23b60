//! A Hugging Face checkpoint folder's safetensors files, each header checked before anything
//! is loaded (a missing shard or a corrupt header names the file).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// The safetensors files of a folder: those model.safetensors.index.json maps (a sharded
/// checkpoint), else model.safetensors, else every *.safetensors.
pub(super) fn safetensors_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let index = dir.join("model.safetensors.index.json");
    if index.is_file() {
        let text = std::fs::read_to_string(&index)?;
        let v: serde_json::Value =
            serde_json::from_str(&text).with_context(|| format!("parsing {}", index.display()))?;
        let map = v
            .get("weight_map")
            .and_then(|m| m.as_object())
            .with_context(|| format!("{}: no weight_map", index.display()))?;
        let mut files: Vec<String> = map
            .values()
            .filter_map(|f| f.as_str().map(str::to_string))
            .collect();
        files.sort();
        files.dedup();
        let files: Vec<PathBuf> = files.iter().map(|f| dir.join(f)).collect();
        for f in &files {
            if !f.is_file() {
                bail!(
                    "{}: lists shard {} which is not there",
                    index.display(),
                    f.display()
                );
            }
            crate::model::weights::safetensors_header(f)?;
        }
        return Ok(files);
    }
    let single = dir.join("model.safetensors");
    if single.is_file() {
        crate::model::weights::safetensors_header(&single)?;
        return Ok(vec![single]);
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
        .collect();
    files.sort();
    if files.is_empty() {
        bail!("{}: no *.safetensors files (a Hugging Face folder holds config.json and model.safetensors, or shards with model.safetensors.index.json)", dir.display());
    }
    for f in &files {
        crate::model::weights::safetensors_header(f)?;
    }
    Ok(files)
}
