//! The run directory on disk: `<root>/<experiment>/<run-id>/` with manifest.json, cells/,
//! traces/, sessions/; its lock (flock), the per-cell claims of workers, atomic writes. Reading
//! back is `read_back.rs`. The folders the runner writes into are its own: a symlink in their
//! place is refused, so nothing is ever written outside the run directory.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::{now_rfc3339, CellRecord, Manifest, Session};
use crate::error::InputError;
use crate::files;
use crate::sensor::PowerSample;

/// A run's folder on disk. A writer holds its lock (see [`RunLock`]) for as long as it lives.
pub struct RunDir {
    pub path: PathBuf,
    _lock: Option<RunLock>,
}

/// The name of the lock file inside a run directory.
pub const LOCK_FILE: &str = ".lock";
/// Held while reports are rendered (see [`RunDir::render_lock`]).
pub const RENDER_LOCK_FILE: &str = ".render.lock";
/// Worker sessions, one file each.
pub const SESSIONS_DIR: &str = "sessions";
/// Per-cell claim locks of workers.
pub const CLAIMS_DIR: &str = ".claims";

/// A hold on the rendering of a run's reports (see [`RunDir::render_lock`]).
pub struct RenderLock {
    _file: std::fs::File,
}

/// A worker's hold on one cell (see [`RunDir::try_claim`]).
pub struct CellClaim {
    _file: std::fs::File,
}

/// An exclusive advisory lock (flock) on `<run>/.lock`, holding the writer's pid, host and start
/// time. The kernel releases it when the process ends in any way, `kill -9` included, so a crashed
/// run never needs cleaning up before `--resume`; the file itself stays (removing it would let two
/// later runners lock two different files).
pub struct RunLock {
    _file: std::fs::File,
}

impl RunLock {
    /// A shared hold on the run lock, for single-cell tasks and workers (`--cell-index`,
    /// `--cell`, `--worker`): they may write one run together, each cell claimed alone, but never
    /// beside a serial run, which holds the lock exclusively.
    pub fn acquire_shared(dir: &Path) -> Result<Self> {
        let path = dir.join(LOCK_FILE);
        let mut file = open_lock_file(&path)?;
        match file.try_lock_shared() {
            Ok(()) => Ok(Self { _file: file }),
            Err(std::fs::TryLockError::WouldBlock) => {
                let holder = read_holder(&mut file);
                Err(crate::error::ConfigError::new(format!(
                    "{} is in use by a runner measuring the whole run ({}): a single-cell task must not measure beside it (both measurements would share the device); wait for it to end, then run the task again",
                    dir.display(),
                    holder.trim()
                ))
                .into())
            }
            Err(std::fs::TryLockError::Error(e)) => {
                Err(e).with_context(|| format!("locking {}", path.display()))
            }
        }
    }

    pub fn acquire(dir: &Path) -> Result<Self> {
        use std::io::Seek;
        let path = dir.join(LOCK_FILE);
        let mut file = open_lock_file(&path)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let holder = read_holder(&mut file);
                let holder = holder.trim();
                let who = if holder.is_empty() {
                    "another runner (pid not yet written)".to_string()
                } else {
                    format!("another runner ({holder})")
                };
                return Err(crate::error::ConfigError::new(format!(
                    "{} is in use by {who}: two runners must not write one run directory; wait for it to end (or stop it), then resume",
                    dir.display()
                ))
                .into());
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("locking {}", path.display()))
            }
        }
        let holder = format!(
            "pid {} on {}, since {}\n",
            std::process::id(),
            gethostname::gethostname().to_string_lossy(),
            now_rfc3339()
        );
        file.set_len(0)?;
        file.rewind()?;
        file.write_all(holder.as_bytes())?;
        file.sync_all()?;
        Ok(Self { _file: file })
    }
}

/// The run's lock file, opened for locking: a regular file or none yet (then created), never
/// through a symlink, never a FIFO (opening one for writing would wait for a reader forever).
fn open_lock_file(path: &Path) -> Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK);
    }
    let file = options.open(path).map_err(|e| {
        InputError::new(format!(
            "cannot open the lock file {}: {e} (it must be a regular file the runner made, not a link or a device: remove it)",
            path.display()
        ))
    })?;
    if !file.metadata().is_ok_and(|m| m.is_file()) {
        return Err(InputError::new(format!(
            "the lock file {} is not a regular file: remove it, then run again",
            path.display()
        ))
        .into());
    }
    Ok(file)
}

/// Who holds the lock, as its holder wrote it (a line; bounded).
fn read_holder(file: &mut std::fs::File) -> String {
    use std::io::Read;
    let mut holder = String::new();
    let _ = file
        .take(files::limit::LOCK_HOLDER)
        .read_to_string(&mut holder);
    holder
}

impl RunDir {
    /// `results/<experiment>/<run-id>/` under `root`, or exactly `out` when given, locked for this
    /// process. A run id is the UTC start time; a suffix keeps two runs started in the same second
    /// apart.
    pub fn create(root: &Path, experiment: &str, out: Option<&Path>) -> Result<(Self, String)> {
        let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string();
        let (path, run_id) = match out {
            Some(dir) => {
                let id = dir
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_else(|| stamp.clone());
                (dir.to_path_buf(), id)
            }
            None => {
                let base = root.join(experiment);
                let mut id = stamp.clone();
                let mut n = 1;
                while base.join(&id).exists() {
                    n += 1;
                    id = format!("{stamp}-{n}");
                }
                (base.join(&id), id)
            }
        };
        // Lock before looking when a runner may be here: it is the better thing to report.
        let early = if path.join(LOCK_FILE).is_file() {
            Some(RunLock::acquire(&path)?)
        } else {
            None
        };
        if path.join("manifest.json").exists() {
            return Err(crate::error::ConfigError::new(format!(
                "{} already holds a run (manifest.json): add --resume to complete it, or choose another --out folder",
                path.display()
            ))
            .into());
        }
        refuse_foreign_contents(&path)?;
        std::fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        for sub in ["cells", "traces"] {
            files::own_dir(&path, sub)?;
        }
        let lock = match early {
            Some(lock) => lock,
            None => RunLock::acquire(&path)?,
        };
        Ok((
            Self {
                path,
                _lock: Some(lock),
            },
            run_id,
        ))
    }

    /// An existing run, locked for this process, with the temporary files of a writer that was
    /// killed mid-write removed (their targets are either complete or absent).
    pub fn resume(path: &Path) -> Result<Self> {
        let mut dir = Self::open(path)?;
        dir._lock = Some(RunLock::acquire(path)?);
        for sub in ["", "cells", "traces"] {
            let folder = if sub.is_empty() {
                path.to_path_buf()
            } else {
                files::own_dir(path, sub)?
            };
            for entry in std::fs::read_dir(&folder)? {
                let entry = entry?;
                let name = entry.file_name().to_string_lossy().into_owned();
                if is_temporary(&name) && entry.file_type()?.is_file() {
                    std::fs::remove_file(entry.path()).with_context(|| {
                        format!("removing the leftover {}", entry.path().display())
                    })?;
                }
            }
        }
        Ok(dir)
    }

    /// The newest run of `experiment` under `root` (by its manifest's start time), for
    /// `--resume` without `--out`.
    pub fn latest(root: &Path, experiment: &str) -> Result<Option<PathBuf>> {
        let base = root.join(experiment);
        let Ok(entries) = std::fs::read_dir(&base) else {
            return Ok(None);
        };
        let mut newest: Option<(String, PathBuf)> = None;
        for entry in entries {
            let path = entry?.path();
            let Ok(manifest) = (Self {
                path: path.clone(),
                _lock: None,
            })
            .read_manifest() else {
                continue;
            };
            let key = manifest.started_at.clone();
            if newest.as_ref().is_none_or(|(k, _)| key > *k) {
                newest = Some((key, path));
            }
        }
        Ok(newest.map(|(_, p)| p))
    }

    /// An existing run that several workers write at once (one per GPU, or Slurm array tasks):
    /// the run lock held shared (refused while a serial run holds it); each cell is claimed with
    /// [`RunDir::try_claim`].
    pub fn open_shared(path: &Path) -> Result<Self> {
        let mut dir = Self::open(path)?;
        dir._lock = Some(RunLock::acquire_shared(path)?);
        for sub in ["cells", "traces", SESSIONS_DIR, CLAIMS_DIR] {
            files::own_dir(path, sub)?;
        }
        Ok(dir)
    }

    /// Turns this process's exclusive run lock into a shared one, for a coordinator about to
    /// start workers that hold it shared: a serial runner stays refused throughout.
    /// The folders the workers write are checked here first, so that one that is a link out of
    /// the run is refused by the coordinator (exit 2) before any worker starts.
    pub fn share_lock(&self) -> Result<()> {
        for sub in ["cells", "traces", SESSIONS_DIR, CLAIMS_DIR] {
            files::own_dir(&self.path, sub)?;
        }
        if let Some(lock) = &self._lock {
            lock._file
                .lock_shared()
                .with_context(|| format!("sharing the lock of {}", self.path.display()))?;
        }
        Ok(())
    }

    /// Waits for, then holds, the right to render this run's reports: a render reads the records
    /// and writes the reports under it, so two renders (a `runner report` racing the end of a
    /// run, or the Slurm report job) never interleave, and the last to write is the last to have
    /// read: a report of 7 of 21 cells never lands over the final one. Released when dropped.
    pub fn render_lock(&self) -> Result<RenderLock> {
        let path = self.path.join(RENDER_LOCK_FILE);
        let file = open_lock_file(&path)?;
        file.lock()
            .with_context(|| format!("locking {}", path.display()))?;
        Ok(RenderLock { _file: file })
    }

    /// Claims a cell for this process: an exclusive flock on `.claims/<id>.lock`, released when
    /// the claim is dropped or the process dies (kill -9 and a cancelled Slurm task included).
    /// `None` when another worker holds it.
    pub fn try_claim(&self, cell_id: &str) -> Result<Option<CellClaim>> {
        let path = self.path.join(CLAIMS_DIR).join(format!("{cell_id}.lock"));
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(false);
        // Never created or opened through a link someone left there: nothing is written outside
        // the run directory.
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::custom_flags(
            &mut options,
            libc::O_NOFOLLOW | libc::O_NONBLOCK,
        );
        let file = options.open(&path).map_err(|e| {
            InputError::new(format!(
                "cannot open the claim {}: {e} (it is not a file the runner made, e.g. a link: remove it)",
                path.display()
            ))
        })?;
        match file.try_lock() {
            Ok(()) => Ok(Some(CellClaim { _file: file })),
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(e)) => {
                Err(e).with_context(|| format!("locking {}", path.display()))
            }
        }
    }

    /// A worker's session, in its own file `sessions/<label>-<pid>.json` (workers never write the
    /// shared manifest; a resumed run's gpu0 does not overwrite the earlier gpu0's session).
    pub fn write_worker_session(&self, session: &Session) -> Result<()> {
        let label = session
            .worker
            .as_ref()
            .map(|w| w.label.as_str())
            .unwrap_or("worker");
        // The label names a file here: never a path (the worker checks it; this is the backstop).
        if label.is_empty()
            || !label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            bail!("worker label {label:?} cannot name a session file: letters, digits, '-' and '_' only");
        }
        write_atomic(
            &self
                .path
                .join(SESSIONS_DIR)
                .join(format!("{label}-{}.json", session.pid)),
            serde_json::to_string_pretty(session)?.as_bytes(),
        )
    }

    pub fn open(path: &Path) -> Result<Self> {
        // Present in any form: what it is, `read_manifest` says.
        if std::fs::symlink_metadata(path.join("manifest.json")).is_err() {
            return Err(InputError::new(format!(
                "{} is not a run directory: it has no manifest.json (expected results/<experiment>/<run-id>/)",
                path.display()
            ))
            .into());
        }
        Ok(Self {
            path: path.to_path_buf(),
            _lock: None,
        })
    }

    pub fn write_manifest(&self, manifest: &Manifest) -> Result<()> {
        write_atomic(
            &self.path.join("manifest.json"),
            serde_json::to_string_pretty(manifest)?.as_bytes(),
        )
    }

    pub fn write_record(&self, record: &CellRecord) -> Result<()> {
        write_atomic(
            &self
                .path
                .join("cells")
                .join(format!("{}.json", record.cell.id)),
            serde_json::to_string_pretty(record)?.as_bytes(),
        )
    }

    pub fn write_trace(&self, cell_id: &str, trace: &[PowerSample]) -> Result<()> {
        let mut text = String::from("t_s,power_w\n");
        for s in trace {
            text.push_str(&format!("{:.4},{:.3}\n", s.t_s, s.power_w));
        }
        write_atomic(
            &self.path.join("traces").join(format!("{cell_id}.csv")),
            text.as_bytes(),
        )
    }
}

/// What the runner itself leaves in a run directory before its manifest is written (a run
/// killed right at its start): anything else is someone's files, which a new run must not
/// overwrite or mix with.
fn refuse_foreign_contents(path: &Path) -> Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if !m.is_dir() && !m.file_type().is_symlink() => {
            return Err(crate::error::ConfigError::new(format!(
                "{} is a file, not a folder: a run is written into a new or empty folder, so choose another --out",
                path.display()
            ))
            .into())
        }
        _ => {}
    }
    let entries = match std::fs::read_dir(path) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("listing {}", path.display())),
    };
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let ours = match name.as_str() {
            LOCK_FILE => entry.file_type()?.is_file(),
            "cells" | "traces" | SESSIONS_DIR | CLAIMS_DIR => {
                entry.file_type()?.is_dir() && std::fs::read_dir(entry.path())?.next().is_none()
            }
            _ => false,
        };
        if !ours {
            let kind = if entry.file_type()?.is_dir() { "/" } else { "" };
            found.push(format!("{name}{kind}"));
        }
    }
    if found.is_empty() {
        return Ok(());
    }
    found.sort();
    let shown = found.len().min(5);
    let more = if found.len() > shown {
        format!(" and {} more", found.len() - shown)
    } else {
        String::new()
    };
    let hint = if found.iter().any(|f| f == "cells/") {
        " (records without a manifest.json: not a run this runner can complete; move them away if they matter)"
    } else {
        ""
    };
    Err(crate::error::ConfigError::new(format!(
        "{} is not empty and holds no run of the runner's: found {}{more}{hint}; a run is written only into a new or empty folder, so choose another --out (or leave --out out for results/<experiment>/<run-id>/)",
        path.display(),
        found[..shown].join(", ")
    ))
    .into())
}

/// Write to a temporary file in the same folder, fsync, then rename and fsync the folder: a reader
/// (or a crash, even of the machine) never sees a half-written file. For measurements: records,
/// traces, the manifest.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_via_rename(path, bytes, true)
}

/// Write to a temporary file, then rename, without fsync: a reader or a killed runner never sees a
/// half-written file, but a power loss may lose it. For what `runner report` can rebuild from the
/// records (charts, CSV summaries, reports): a thousand-cell report writes over 2,000 files, and
/// fsyncing each took half its time.
pub fn write_derived(path: &Path, bytes: &[u8]) -> Result<()> {
    write_via_rename(path, bytes, false)
}

fn write_via_rename(path: &Path, bytes: &[u8], durable: bool) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let (tmp, mut file) = tempfile_in(dir, path)?;
    let written = file
        .write_all(bytes)
        .and_then(|()| if durable { file.sync_all() } else { Ok(()) });
    drop(file);
    // A full disk (or any failed write) leaves no temporary behind, and names the file.
    if let Err(e) = written.and_then(|()| std::fs::rename(&tmp, path)) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("writing {}", path.display()));
    }
    // The rename itself is durable only once the folder's entry is on disk (a crash right after
    // could otherwise lose a finished cell's record).
    #[cfg(unix)]
    if durable {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .with_context(|| format!("syncing {}", dir.display()))?;
    }
    Ok(())
}

/// `.NAME.PID.tmp`: the temporary a [`write_atomic`] in progress writes before its rename.
fn is_temporary(name: &str) -> bool {
    name.starts_with('.') && name.ends_with(".tmp")
}

fn tempfile_in(dir: &Path, target: &Path) -> Result<(PathBuf, std::fs::File)> {
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    // A leftover of this pid's (a name cannot be in use twice by one process) is removed, and the
    // file is created anew: never opened through a symlink someone left under that name.
    let _ = std::fs::remove_file(&tmp);
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .with_context(|| format!("creating {}", tmp.display()))?;
    Ok((tmp, file))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_atomic_replaces_the_file_and_leaves_no_temporary_behind() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.json");
        write_atomic(&path, b"one").unwrap();
        write_atomic(&path, b"two").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "two");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_failed_write_names_the_file_and_leaves_no_temporary_behind() {
        let dir = tempfile::tempdir().unwrap();
        // A folder where the file should go: the rename fails, as a full disk fails the write.
        let path = dir.path().join("report.md");
        std::fs::create_dir(&path).unwrap();
        let err = write_derived(&path, b"x").unwrap_err();
        assert!(format!("{err:#}").contains("writing "), "{err:#}");
        assert!(format!("{err:#}").contains("report.md"), "{err:#}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
