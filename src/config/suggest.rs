//! How a configuration problem is told: keys as a user writes them (`matrix.precision[1]`), type
//! names in a TOML author's words, and "did you mean" for a near miss.

/// ` (did you mean `x`?)` when one candidate is close to what was written (a typo, not a guess):
/// Jaro-Winkler similarity of at least 0.85, the closest one; else nothing.
pub fn did_you_mean<'a>(written: &str, candidates: impl Iterator<Item = &'a str>) -> String {
    candidates
        .map(|c| (strsim::jaro_winkler(written, c), c))
        .filter(|(score, _)| *score >= 0.85)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| format!(" (did you mean `{c}`?)"))
        .unwrap_or_default()
}

/// `["matrix", "precision", "1"]` -> `matrix.precision[1]`, as a user would write it.
pub(super) fn key_path(parts: &[String]) -> String {
    let mut out = String::new();
    for p in parts {
        if p.parse::<usize>().is_ok() && !out.is_empty() {
            out.push_str(&format!("[{p}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(p);
        }
    }
    out
}

pub(super) fn join_key(parent: &str, field: &str) -> String {
    if parent.is_empty() {
        field.to_string()
    } else {
        format!("{parent}.{field}")
    }
}

/// serde's Rust type names in words a TOML author uses.
pub(super) fn plain_type(expected: &str) -> &str {
    match expected {
        "i8" | "i16" | "i32" | "i64" | "i128" | "u8" | "u16" | "u32" | "u64" | "u128" | "usize"
        | "isize" => "an integer",
        "f32" | "f64" => "a number",
        "a boolean" | "bool" => "true or false",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn did_you_mean_suggests_close_names_only() {
        let keys = ["repeats", "min_loops", "min_window_s"];
        assert_eq!(
            did_you_mean("repets", keys.into_iter()),
            " (did you mean `repeats`?)"
        );
        assert_eq!(
            did_you_mean("min_window", keys.into_iter()),
            " (did you mean `min_window_s`?)"
        );
        assert_eq!(did_you_mean("colour", keys.into_iter()), "");
        let precisions = ["fp32", "fp16", "bf16", "q8_0", "q4_0"];
        assert_eq!(
            did_you_mean("q8", precisions.into_iter()),
            " (did you mean `q8_0`?)"
        );
    }

    #[test]
    fn key_paths_print_indices_in_brackets() {
        let parts = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            key_path(&parts(&["matrix", "precision", "1"])),
            "matrix.precision[1]"
        );
        assert_eq!(
            key_path(&parts(&["protocol", "repeats"])),
            "protocol.repeats"
        );
    }
}
