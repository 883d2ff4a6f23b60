//! What `runner slurm` writes: the arrays' task ids (split at the cluster's MaxArraySize, in
//! Slurm's `--array` syntax), the sbatch scripts with every value quoted for where it lands
//! (sbatch's `#SBATCH` parsing, a POSIX shell), and the command that submits the rest.

use std::path::Path;

use super::SlurmOptions;
use crate::run::shell_quote;

/// One array job: task i measures plan cell `offset + i`.
#[derive(Debug, Clone, PartialEq)]
pub struct ArrayChunk {
    pub offset: usize,
    /// Task ids (cell index - offset), ascending.
    pub tasks: Vec<usize>,
}

/// Cells to measure, split so that no task id reaches `max_array_size`.
pub fn chunks(indices: &[usize], max_array_size: usize) -> Vec<ArrayChunk> {
    let mut out: Vec<ArrayChunk> = Vec::new();
    for &i in indices {
        let offset = i / max_array_size * max_array_size;
        match out.last_mut() {
            Some(c) if c.offset == offset => c.tasks.push(i - offset),
            _ => out.push(ArrayChunk {
                offset,
                tasks: vec![i - offset],
            }),
        }
    }
    out
}

/// `0-3,5,7-9`: Slurm's --array syntax for ascending task ids.
pub fn array_spec(tasks: &[usize]) -> String {
    let mut parts = Vec::new();
    let mut i = 0;
    while i < tasks.len() {
        let start = tasks[i];
        let mut end = start;
        while i + 1 < tasks.len() && tasks[i + 1] == end + 1 {
            i += 1;
            end = tasks[i];
        }
        parts.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
        i += 1;
    }
    parts.join(",")
}

/// The command that submits whatever cells of a Slurm run have no record yet.
pub fn resubmit_command(file: &str, dir: &Path, overrides: &[String]) -> String {
    let mut cmd = format!(
        "runner slurm {} --out {} --submit",
        crate::shell::shell_path(file),
        shell_quote(&dir.display().to_string())
    );
    for o in overrides {
        cmd.push_str(&format!(" --set {}", shell_quote(o)));
    }
    cmd
}

/// One `#SBATCH` argument as sbatch reads it: as is when plainly safe, else in double quotes with
/// `\` and `"` escaped (sbatch splits these lines on blanks, honours quotes and backslashes, and
/// treats an unquoted `#` as the start of a comment).
fn sbatch_quote(s: &str) -> String {
    if s.chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_./=:,%@+".contains(c))
    {
        s.to_string()
    } else {
        format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
    }
}

/// A log file in the run directory as an sbatch filename pattern: the directory's own `%` doubled
/// (sbatch reads `%x`, `%j` ... as replacement symbols anywhere in the name), then `pattern`.
/// A `\` would turn every replacement off: the caller refuses such directories.
fn log_pattern(dir: &Path, pattern: &str) -> String {
    format!(
        "{}/slurm/logs/{pattern}",
        dir.display().to_string().replace('%', "%%")
    )
}

/// The `#SBATCH` lines every script starts with, each argument quoted for sbatch.
fn sbatch_header(opts: &SlurmOptions, job_name: &str, log: &str, cwd: &Path) -> String {
    let line = |arg: String| format!("#SBATCH {}", sbatch_quote(&arg));
    let mut lines = vec![
        "#!/bin/bash".to_string(),
        line(format!("--job-name={job_name}")),
        line(format!("--output={log}")),
        line(format!("--chdir={}", cwd.display())),
        "#SBATCH --ntasks=1".to_string(),
    ];
    if let Some(p) = &opts.partition {
        lines.push(line(format!("--partition={p}")));
    }
    if let Some(t) = &opts.time {
        lines.push(line(format!("--time={t}")));
    }
    if let Some(c) = opts.cpus_per_task {
        lines.push(format!("#SBATCH --cpus-per-task={c}"));
    }
    for extra in &opts.sbatch_args {
        lines.push(line(extra.clone()));
    }
    lines.join("\n")
}

/// An array job's script: task i measures cell `offset + i`, with the run's overrides.
pub(super) fn array_script(
    opts: &SlurmOptions,
    name: &str,
    exe: &Path,
    file: &Path,
    dir: &Path,
    cwd: &Path,
    chunk: &ArrayChunk,
) -> String {
    let mut header = sbatch_header(
        opts,
        &format!("runner-{name}"),
        &log_pattern(dir, "%A_%a.log"),
        cwd,
    );
    let parallel = opts
        .array_parallelism
        .map(|k| format!("%{k}"))
        .unwrap_or_default();
    header.push_str(&format!(
        "\n#SBATCH --array={}{parallel}",
        array_spec(&chunk.tasks)
    ));
    if let Some(g) = opts.gpus_per_task {
        header.push_str(&format!("\n#SBATCH --gpus-per-task={g}"));
    }
    let mut cmd = format!(
        "exec {} run {} --out {} --cell-index \"$(({} + SLURM_ARRAY_TASK_ID))\"",
        shell_quote(&exe.display().to_string()),
        shell_quote(&file.display().to_string()),
        shell_quote(&dir.display().to_string()),
        chunk.offset
    );
    for o in &opts.overrides {
        cmd.push_str(&format!(" --set {}", shell_quote(o)));
    }
    format!(
        "{header}\n# Written by `runner slurm`: task i measures cell {offset}+i of the plan of\n# {file} into {dir} (one cell per task; the record is the result).\nset -euo pipefail\n{cmd}\n",
        offset = chunk.offset,
        file = file.display(),
        dir = dir.display()
    )
}

/// The report job's script, run after the arrays.
pub(super) fn report_script_text(
    opts: &SlurmOptions,
    name: &str,
    exe: &Path,
    dir: &Path,
    cwd: &Path,
) -> String {
    let header = sbatch_header(
        opts,
        &format!("runner-{name}-report"),
        &log_pattern(dir, "report-%j.log"),
        cwd,
    );
    format!(
        "{header}\n# Written by `runner slurm`: renders the reports from the records once the arrays end.\nset -euo pipefail\nexec {} report {}\n",
        shell_quote(&exe.display().to_string()),
        shell_quote(&dir.display().to_string())
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn array_specs_compress_runs_of_task_ids() {
        assert_eq!(array_spec(&[0, 1, 2, 3, 5, 7, 8, 9]), "0-3,5,7-9");
        assert_eq!(array_spec(&[4]), "4");
        assert_eq!(array_spec(&[]), "");
    }

    #[test]
    fn plans_beyond_the_array_limit_split_into_arrays_with_offsets() {
        let c = chunks(&[0, 1, 999, 1000, 1001, 2500], 1000);
        assert_eq!(
            c,
            vec![
                ArrayChunk {
                    offset: 0,
                    tasks: vec![0, 1, 999]
                },
                ArrayChunk {
                    offset: 1000,
                    tasks: vec![0, 1]
                },
                ArrayChunk {
                    offset: 2000,
                    tasks: vec![500]
                },
            ]
        );
        // Every task id stays below the limit, and offset + id gives back each cell.
        let cells: Vec<usize> = c
            .iter()
            .flat_map(|c| c.tasks.iter().map(move |t| c.offset + t))
            .collect();
        assert_eq!(cells, vec![0, 1, 999, 1000, 1001, 2500]);
        assert!(c.iter().all(|c| c.tasks.iter().all(|&t| t < 1000)));
    }

    #[test]
    fn a_run_directory_with_a_percent_sign_keeps_it_in_the_log_names() {
        assert_eq!(
            log_pattern(Path::new("/r/100%x done"), "%A_%a.log"),
            "/r/100%%x done/slurm/logs/%A_%a.log"
        );
        let opts = SlurmOptions {
            file: "x.toml".into(),
            out: None,
            overrides: vec![],
            results_root: "results".into(),
            partition: None,
            gpus_per_task: None,
            cpus_per_task: None,
            time: None,
            array_parallelism: None,
            max_array_size: 1001,
            sbatch_args: vec![],
            submit: false,
            new: false,
        };
        let header = sbatch_header(
            &opts,
            "runner-x",
            &log_pattern(Path::new("/r/a%j"), "report-%j.log"),
            Path::new("/w"),
        );
        assert!(
            header.contains("#SBATCH --output=/r/a%%j/slurm/logs/report-%j.log"),
            "{header}"
        );
    }

    #[test]
    fn the_resubmit_command_repeats_the_overrides_quoted() {
        let cmd = resubmit_command(
            "exp.toml",
            Path::new("/r/run 1"),
            &["matrix.batch_size=[1, 2]".into()],
        );
        assert_eq!(
            cmd,
            "runner slurm exp.toml --out '/r/run 1' --submit --set 'matrix.batch_size=[1, 2]'"
        );
        // A file named like an option stays the file.
        assert_eq!(
            resubmit_command("-x.toml", Path::new("/r"), &[]),
            "runner slurm ./-x.toml --out /r --submit"
        );
    }
}
