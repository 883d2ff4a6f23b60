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

/// `["matrix", "precision", "1"]` -> `matrix.precision[1]`, as a user would write it; a name
/// TOML cannot write bare is quoted (`models."qwen2.5-0.5b".layers`, see [`toml_key`]).
pub(super) fn key_path(parts: &[String]) -> String {
    let mut out = String::new();
    for p in parts {
        if p.parse::<usize>().is_ok() && !out.is_empty() {
            out.push_str(&format!("[{p}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(&key_name(p));
        }
    }
    out
}

/// A key path as TOML writes it: bare names as they are, any other name quoted
/// (`models."qwen2.5-0.5b".layers`), so a name with dots reads as one name.
pub fn toml_key(parts: &[&str]) -> String {
    parts
        .iter()
        .map(|p| key_name(p))
        .collect::<Vec<_>>()
        .join(".")
}

/// One name of a key path: bare where TOML allows it, else quoted as TOML quotes it.
fn key_name(p: &str) -> String {
    let bare = !p.is_empty()
        && p.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if bare {
        return p.to_string();
    }
    // The toml crate's own key writer (its string writer may pick a multi-line string, which a
    // key cannot be): `NAME = 0` with the key quoted as TOML needs.
    let one = toml::Table::from_iter([(p.to_string(), toml::Value::Integer(0))]);
    toml::to_string(&one)
        .ok()
        .and_then(|line| line.trim_end().strip_suffix(" = 0").map(str::to_string))
        .unwrap_or_else(|| format!("{p:?}"))
}

/// `parent.field`, the field quoted where TOML needs it.
pub(super) fn join_key(parent: &str, field: &str) -> String {
    if parent.is_empty() {
        key_name(field)
    } else {
        format!("{parent}.{}", key_name(field))
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
    fn toml_keys_quote_only_names_toml_cannot_write_bare() {
        assert_eq!(
            toml_key(&["models", "qwen2.5-0.5b", "layers"]),
            r#"models."qwen2.5-0.5b".layers"#
        );
        assert_eq!(toml_key(&["protocol", "repeats"]), "protocol.repeats");
        // Quoted so that it reads back as the same name, whatever it holds.
        let quoted = toml_key(&["models", "a\"b'c"]);
        let back: toml::Table = toml::from_str(&format!("{quoted} = 1")).unwrap();
        assert!(back["models"]["a\"b'c"].is_integer(), "{quoted}");
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

    /// figment's paths hold the model's name as one part: a dotted name is quoted, so
    /// `models."qwen2.5-0.5b".colour` is not read as models.qwen2 / 5-0 / 5b.
    #[test]
    fn key_paths_quote_dotted_names() {
        let parts = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            key_path(&parts(&["models", "qwen2.5-0.5b", "layers"])),
            r#"models."qwen2.5-0.5b".layers"#
        );
        assert_eq!(
            join_key(&key_path(&parts(&["models", "qwen2.5-0.5b"])), "colour"),
            r#"models."qwen2.5-0.5b".colour"#
        );
        assert_eq!(join_key("", "a.b"), r#""a.b""#);
    }
}
