//! Where `runner compare` writes: `--out` or a folder named after the two runs, never inside a
//! run directory and never over files it did not write.

use std::path::{Path, PathBuf};

use anyhow::Result;

use crate::error::ConfigError;

/// A run id as a file-name part: letters, digits, `.`, `-`, `_` kept, anything else `_`, at
/// most 60 characters (a manifest's run id is text of the run's, not a path).
fn name_part(id: &str) -> String {
    let s: String = id
        .chars()
        .take(60)
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect();
    match s.trim_start_matches('.') {
        "" => "run".into(),
        t => t.to_string(),
    }
}

/// `compare-<A's run id>-vs-<B's run id>` in the current directory: not inside either run,
/// whose directory holds that run's evidence (it may be committed, or a run may still be
/// writing into it), and one folder per pair, so comparing B with C keeps B against A.
pub fn default_out(a_run_id: &str, b_run_id: &str) -> PathBuf {
    PathBuf::from(format!(
        "compare-{}-vs-{}",
        name_part(a_run_id),
        name_part(b_run_id)
    ))
}

/// How the files this command writes begin: what it finds otherwise under their names is not its.
const WRITTEN: [(&str, &str); 2] = [
    ("compare.md", "# runner compare: "),
    ("compare.html", "<!DOCTYPE html>"),
];

/// `--out` (or the default) is a folder, created when absent, outside every run directory, whose
/// compare.md and compare.html, if there, are an earlier comparison's (never the user's files).
pub(super) fn check_out(out: &Path) -> Result<()> {
    if out.exists() && !out.is_dir() {
        return Err(ConfigError::new(format!(
            "--out {}: not a folder; give a folder for compare.md and compare.html (created when absent)",
            out.display()
        ))
        .into());
    }
    // The deepest existing folder on the way (the rest is created below it).
    let absolute = std::path::absolute(out).unwrap_or_else(|_| out.to_path_buf());
    let existing = absolute.ancestors().find(|a| a.is_dir());
    let resolved = existing.and_then(|a| std::fs::canonicalize(a).ok());
    if let Some(run) = resolved
        .iter()
        .flat_map(|r| r.ancestors())
        .find(|a| a.join("manifest.json").is_file())
    {
        return Err(ConfigError::new(format!(
            "--out {}: inside the run directory {}; a run holds its own evidence (it may be committed, or still running): give a folder outside it",
            out.display(),
            run.display()
        ))
        .into());
    }
    for (file, start) in WRITTEN {
        let path = out.join(file);
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        let ours = meta.is_file() && {
            let mut head = vec![0u8; start.len()];
            std::fs::File::open(&path)
                .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut head))
                .is_ok()
                && head == start.as_bytes()
        };
        if !ours {
            return Err(ConfigError::new(format!(
                "--out {}: {file} there is not an earlier `runner compare` output; it is kept: give another folder, or move it away",
                out.display()
            ))
            .into());
        }
    }
    std::fs::create_dir_all(out).map_err(|e| {
        ConfigError::new(format!(
            "--out {}: cannot create the folder: {e}",
            out.display()
        ))
    })?;
    Ok(())
}
