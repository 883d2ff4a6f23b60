//! Reading a run directory back: every file through the bounded reader (`crate::files`: regular
//! files only, size limits, no symlink out of the run), parsed, then checked (`check.rs`). The
//! `parse_*` functions are what the fuzz target `run_records` drives.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Result;

use super::check::{check_manifest, check_record, check_session, check_trace};
use super::{CellRecord, Manifest, RunDir, Session, SESSIONS_DIR};
use crate::config::ProtocolSection;
use crate::error::InputError;
use crate::files::{self, limit};
use crate::matrix::Cell;
use crate::sensor::PowerSample;

/// `manifest.json`'s bytes as a checked manifest.
pub fn parse_manifest(bytes: &[u8], path: &Path) -> Result<Manifest, InputError> {
    let m: Manifest = serde_json::from_slice(bytes).map_err(|e| {
        InputError::new(format!(
            "parsing {}: {e}: not a manifest this runner wrote (restore the original)",
            path.display()
        ))
    })?;
    check_manifest(&m, path)?;
    Ok(m)
}

/// A record's bytes as a record checked against its planned cell (`None`: not in the plan) and
/// the run's protocol.
pub fn parse_record(
    bytes: &[u8],
    path: &Path,
    planned: Option<&Cell>,
    protocol: &ProtocolSection,
) -> Result<CellRecord, InputError> {
    let r: CellRecord = serde_json::from_slice(bytes).map_err(|e| {
        InputError::new(format!(
            "parsing {}: {e} (delete it to measure that cell again with --resume)",
            path.display()
        ))
    })?;
    check_record(&r, path, planned, protocol)?;
    Ok(r)
}

/// A session file's bytes as a checked session.
pub fn parse_session(bytes: &[u8], path: &Path) -> Result<Session, InputError> {
    let s: Session = serde_json::from_slice(bytes).map_err(|e| {
        InputError::new(format!(
            "parsing {}: {e} (a worker's session file: restore or remove it)",
            path.display()
        ))
    })?;
    check_session(&s, path)?;
    Ok(s)
}

/// A trace's bytes (`t_s,power_w` rows) as checked samples.
pub fn parse_trace(bytes: &[u8], path: &Path) -> Result<Vec<PowerSample>, InputError> {
    let samples = csv::Reader::from_reader(bytes)
        .deserialize()
        .collect::<std::result::Result<Vec<PowerSample>, _>>()
        .map_err(|e| {
            InputError::new(format!(
                "parsing {}: {e} (a power trace: delete it, or restore the runner's original)",
                path.display()
            ))
        })?;
    check_trace(&samples, path)?;
    Ok(samples)
}

impl RunDir {
    fn record_path(&self, cell_id: &str) -> PathBuf {
        self.path.join("cells").join(format!("{cell_id}.json"))
    }

    pub fn read_manifest(&self) -> Result<Manifest> {
        let path = self.path.join("manifest.json");
        let bytes = files::read_within(&self.path, &path, limit::MANIFEST, "manifest")?
            .ok_or_else(|| {
                InputError::new(format!(
                    "{} is not a run directory: it has no manifest.json",
                    self.path.display()
                ))
            })?;
        Ok(parse_manifest(&bytes, &path)?)
    }

    /// The record of the planned cell `cell`, checked, if it has one.
    pub fn read_record(
        &self,
        cell: &Cell,
        protocol: &ProtocolSection,
    ) -> Result<Option<CellRecord>> {
        let path = self.record_path(&cell.id);
        let Some(bytes) = files::read_within(&self.path, &path, limit::RECORD, "record")? else {
            return Ok(None);
        };
        Ok(Some(parse_record(&bytes, &path, Some(cell), protocol)?))
    }

    /// Every stored record, checked against the manifest's plan, in plan order. A record of a
    /// cell the plan lacks is refused: it belongs to another run.
    pub fn read_records(&self, manifest: &Manifest) -> Result<Vec<CellRecord>> {
        let planned: BTreeMap<&str, &Cell> =
            manifest.plan.iter().map(|c| (c.id.as_str(), c)).collect();
        let protocol = &manifest.config.protocol;
        let dir = self.path.join("cells");
        // A run that kept no cells/ folder (its summary only) has no records to read.
        if std::fs::symlink_metadata(&dir).is_err() {
            return Ok(Vec::new());
        }
        files::check_within(&self.path, &dir, "folder")?;
        let mut by_id = BTreeMap::new();
        let entries = std::fs::read_dir(&dir)
            .map_err(|e| InputError::new(format!("listing {}: {e}", dir.display())))?;
        for entry in entries {
            let path = entry?.path();
            if path.extension().is_none_or(|e| e != "json") {
                continue;
            }
            let Some(bytes) = files::read_within(&self.path, &path, limit::RECORD, "record")?
            else {
                continue; // removed since the listing
            };
            let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned());
            let cell = stem.as_deref().and_then(|id| planned.get(id).copied());
            if cell.is_none() && stem.as_deref().is_some_and(crate::matrix::is_cell_id) {
                return Err(InputError::new(format!(
                    "{}: cells/{}.json is not in this run's plan (manifest.json): was it copied from another run? Move it away",
                    self.path.display(),
                    stem.unwrap_or_default()
                ))
                .into());
            }
            let record = parse_record(&bytes, &path, cell, protocol)?;
            if by_id.insert(record.cell.id.clone(), record).is_some() {
                return Err(InputError::new(format!(
                    "{}: two records of one cell: keep one",
                    path.display()
                ))
                .into());
            }
        }
        Ok(manifest
            .plan
            .iter()
            .filter_map(|c| by_id.remove(&c.id))
            .collect())
    }

    /// Every worker session, by start time.
    pub fn read_worker_sessions(&self) -> Result<Vec<Session>> {
        let dir = self.path.join(SESSIONS_DIR);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return Ok(Vec::new());
        };
        files::check_within(&self.path, &dir, "folder")?;
        let mut sessions = Vec::new();
        for entry in entries {
            let path = entry?.path();
            if path.extension().is_none_or(|e| e != "json") {
                continue;
            }
            if let Some(bytes) = files::read_within(&self.path, &path, limit::SESSION, "session")? {
                sessions.push(parse_session(&bytes, &path)?);
            }
        }
        sessions.sort_by(|a, b| a.started_at.cmp(&b.started_at));
        Ok(sessions)
    }

    /// A cell's power trace, checked, or `None` when the cell has no trace file.
    pub fn read_trace(&self, cell_id: &str) -> Result<Option<Vec<PowerSample>>> {
        let path = self.path.join("traces").join(format!("{cell_id}.csv"));
        let Some(bytes) = files::read_within(&self.path, &path, limit::TRACE, "trace")? else {
            return Ok(None);
        };
        Ok(Some(parse_trace(&bytes, &path)?))
    }
}
