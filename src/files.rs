//! Reading files the runner did not just write (records, manifests, sessions and traces read
//! back; weights' config.json, tokenizers and datasets), bounded: regular files only, at most a
//! stated size, and for files inside a run directory never through a symlink that leads out of
//! it. A FIFO would block a read forever, `/dev/zero` or a sparse file of gigabytes would fill the
//! memory; each is refused by name before a byte is read, as the experiment file already is.
//!
//! Every refusal is an [`InputError`] (exit 2) naming the file, what it should be and what to do.

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::error::InputError;

/// Size limits of what is read back, generous against what the runner writes: the largest record
/// of a per-layer run on an H200 is 0.33 MB, a manifest of 100,000 planned cells ~25 MB, a trace
/// of an hour of 20 ms samples ~3 MB.
pub mod limit {
    /// An experiment file (as `config::load` reads it).
    pub const EXPERIMENT: u64 = 8 << 20;
    /// A report template (`--templates DIR`); the built-in ones are ~30 KB.
    pub const TEMPLATE: u64 = 4 << 20;
    /// A cell record (`cells/<id>.json`).
    pub const RECORD: u64 = 64 << 20;
    /// `manifest.json` (its plan may list 100,000 cells).
    pub const MANIFEST: u64 = 64 << 20;
    /// A worker's session (`sessions/<label>-<pid>.json`).
    pub const SESSION: u64 = 1 << 20;
    /// A power trace (`traces/<id>.csv`).
    pub const TRACE: u64 = 64 << 20;
    /// A Hugging Face `config.json` (a few KB in practice).
    pub const MODEL_CONFIG: u64 = 1 << 20;
    /// A `vocab.txt` or `tokenizer.json` (the largest common ones are ~35 MB).
    pub const TOKENIZER: u64 = 128 << 20;
    /// A dataset file (10 million sentences fit).
    pub const DATASET: u64 = 1 << 30;
    /// The holder line in a lock file.
    pub const LOCK_HOLDER: u64 = 4 << 10;
}

/// A file of at most `max_bytes`, read whole; `what` names it in messages ("record",
/// "dataset"). Symlinks are followed (a dataset may live elsewhere); see [`read_within`] for
/// files of a run directory.
pub fn read(path: &Path, max_bytes: u64, what: &str) -> Result<Vec<u8>, InputError> {
    read_optional(path, max_bytes, what)?
        .ok_or_else(|| InputError::new(format!("{what} {}: no such file", path.display())))
}

/// As [`read`], but `None` when the file does not exist.
pub fn read_optional(
    path: &Path,
    max_bytes: u64,
    what: &str,
) -> Result<Option<Vec<u8>>, InputError> {
    let Some(mut file) = open_regular(path, what)? else {
        return Ok(None);
    };
    let len = file.metadata().map_err(|e| cannot(path, what, &e))?.len();
    if len > max_bytes {
        return Err(too_large(path, what, len, max_bytes));
    }
    let mut bytes = Vec::with_capacity(len as usize);
    (&mut file)
        .take(max_bytes + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| cannot(path, what, &e))?;
    if bytes.len() as u64 > max_bytes {
        return Err(too_large(path, what, bytes.len() as u64, max_bytes));
    }
    Ok(Some(bytes))
}

/// [`read`] as UTF-8 text.
pub fn read_text(path: &Path, max_bytes: u64, what: &str) -> Result<String, InputError> {
    utf8(read(path, max_bytes, what)?, path, what)
}

/// A file inside the run directory `root`, at most `max_bytes`: as [`read_optional`], and a
/// symlink (of the file or of a folder on its way) that leads out of `root` is refused, so a
/// run directory cannot make the runner read `/etc/shadow` or `/dev/zero` into a report.
pub fn read_within(
    root: &Path,
    path: &Path,
    max_bytes: u64,
    what: &str,
) -> Result<Option<Vec<u8>>, InputError> {
    if std::fs::symlink_metadata(path).is_err() {
        return Ok(None);
    }
    check_within(root, path, what)?;
    read_optional(path, max_bytes, what)
}

/// [`read_within`] as UTF-8 text.
pub fn read_text_within(
    root: &Path,
    path: &Path,
    max_bytes: u64,
    what: &str,
) -> Result<Option<String>, InputError> {
    read_within(root, path, max_bytes, what)?
        .map(|b| utf8(b, path, what))
        .transpose()
}

/// Refuses `path` when it resolves (through symlinks) to somewhere outside `root`.
pub fn check_within(root: &Path, path: &Path, what: &str) -> Result<(), InputError> {
    let real_root = root
        .canonicalize()
        .map_err(|e| cannot(root, "run directory", &e))?;
    let real = path.canonicalize().map_err(|e| cannot(path, what, &e))?;
    if real.starts_with(&real_root) {
        Ok(())
    } else {
        Err(InputError::new(format!(
            "{what} {} is a symlink to {}, outside the run directory {}: a run directory holds its own files; replace the link with the file itself",
            path.display(),
            real.display(),
            root.display()
        )))
    }
}

/// A folder inside the run directory `root` the runner writes into (`cells`, `traces`, `charts`
/// ...): created when absent; refused when it is a symlink or not a folder, so nothing is ever
/// written outside the run directory.
pub fn own_dir(root: &Path, name: &str) -> Result<PathBuf, InputError> {
    let path = root.join(name);
    match std::fs::symlink_metadata(&path) {
        Ok(m) if m.is_dir() => Ok(path),
        Ok(m) => {
            let is = if m.file_type().is_symlink() {
                match std::fs::read_link(&path) {
                    Ok(to) => format!("a symlink to {}", to.display()),
                    Err(_) => "a symlink".into(),
                }
            } else {
                "not a folder".into()
            };
            Err(InputError::new(format!(
                "{} is {is}: the runner writes only inside the run directory {}; remove it (or move it away) and run again",
                path.display(),
                root.display()
            )))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir(&path).map_err(|e| cannot(&path, "folder", &e))?;
            Ok(path)
        }
        Err(e) => Err(cannot(&path, "folder", &e)),
    }
}

/// The file opened for reading when it is a regular file (`None` when absent): opened without
/// blocking, so a FIFO cannot hang the runner, then checked on the open descriptor, so what is
/// read is what was checked.
pub fn open_regular(path: &Path, what: &str) -> Result<Option<std::fs::File>, InputError> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NONBLOCK);
    }
    let file = match options.open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(cannot(path, what, &e)),
    };
    let meta = file.metadata().map_err(|e| cannot(path, what, &e))?;
    if !meta.is_file() {
        let kind = if meta.is_dir() {
            "a folder"
        } else {
            "not a regular file (a device, FIFO or socket)"
        };
        return Err(InputError::new(format!(
            "{what} {} is {kind}: the runner reads only regular files; replace it with the file itself",
            path.display()
        )));
    }
    Ok(Some(file))
}

fn utf8(bytes: Vec<u8>, path: &Path, what: &str) -> Result<String, InputError> {
    String::from_utf8(bytes).map_err(|e| {
        InputError::new(format!(
            "{what} {}: not UTF-8 text (first bad byte at offset {})",
            path.display(),
            e.utf8_error().valid_up_to()
        ))
    })
}

fn cannot(path: &Path, what: &str, e: &std::io::Error) -> InputError {
    InputError::new(format!("cannot read {what} {}: {e}", path.display()))
}

fn too_large(path: &Path, what: &str, len: u64, max: u64) -> InputError {
    InputError::new(format!(
        "{what} {} is {}, more than the {} a {what} can be: it is not a file the runner wrote or reads (replace it with the real one)",
        path.display(),
        human_bytes(len),
        human_bytes(max)
    ))
}

fn human_bytes(n: u64) -> String {
    match n {
        0..1024 => format!("{n} bytes"),
        1024..1_048_576 => format!("{:.1} KiB", n as f64 / 1024.0),
        1_048_576..1_073_741_824 => format!("{:.1} MiB", n as f64 / 1_048_576.0),
        _ => format!("{:.1} GiB", n as f64 / 1_073_741_824.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regular_files_within_their_limit_are_read_and_the_rest_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let small = dir.path().join("small.json");
        std::fs::write(&small, b"{}").unwrap();
        assert_eq!(read(&small, 2, "record").unwrap(), b"{}");
        let err = read(&small, 1, "record").unwrap_err().to_string();
        assert!(
            err.contains("small.json is 2 bytes, more than the 1 bytes"),
            "{err}"
        );
        assert_eq!(
            read_optional(&dir.path().join("none"), 9, "x").unwrap(),
            None
        );
        let err = read(dir.path(), 9, "record").unwrap_err().to_string();
        assert!(err.contains("is a folder"), "{err}");
        let err = read(Path::new("/dev/zero"), 9, "record")
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a regular file"), "{err}");
    }

    #[test]
    fn a_symlink_out_of_the_run_is_refused_and_one_inside_it_followed() {
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path().join("run");
        std::fs::create_dir_all(run.join("cells")).unwrap();
        std::fs::write(dir.path().join("outside"), b"x").unwrap();
        std::fs::write(run.join("inside"), b"y").unwrap();
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(dir.path().join("outside"), run.join("cells/a")).unwrap();
            std::os::unix::fs::symlink(run.join("inside"), run.join("cells/b")).unwrap();
            let err = read_within(&run, &run.join("cells/a"), 9, "record")
                .unwrap_err()
                .to_string();
            assert!(err.contains("outside the run directory"), "{err}");
            assert_eq!(
                read_within(&run, &run.join("cells/b"), 9, "record").unwrap(),
                Some(b"y".to_vec())
            );
            std::os::unix::fs::symlink(dir.path(), run.join("charts")).unwrap();
            let err = own_dir(&run, "charts").unwrap_err().to_string();
            assert!(err.contains("is a symlink to"), "{err}");
        }
        assert_eq!(own_dir(&run, "traces").unwrap(), run.join("traces"));
        assert!(run.join("traces").is_dir());
    }
}
