//! Loading an experiment: the file parsed once for positions, then layered with figment (built-in
//! defaults < the file < `RUNNER_SECTION__KEY` variables < `--set` overrides), then validated.
//! Every error names who set the value (file:line:column, variable or override) and the key.

use std::path::Path;

use figment::providers::{Env, Format, Toml};
use figment::{Figment, Metadata};

use super::set_override::SetOverride;
use super::suggest::{did_you_mean, join_key, key_path, plain_type};
use super::validate::validate;
use super::{ExperimentConfig, LoadedExperiment, AXES};
use crate::error::ConfigError;

/// Environment variables of the form `RUNNER_SECTION__KEY` (double underscore between levels).
/// Single-level names such as `RUNNER_TEMP` (set by CI systems) are ignored, not errors.
const ENV_PREFIX: &str = "RUNNER_";

fn env_provider() -> Env {
    Env::prefixed(ENV_PREFIX)
        .filter(|key| key.as_str().contains("__"))
        .split("__")
}

/// Loads, layers and validates an experiment file. Every error is a [`ConfigError`] (exit 2).
pub fn load(file: &Path, overrides: &[String]) -> Result<LoadedExperiment, ConfigError> {
    let bytes = read_limited(file)?;
    let text = String::from_utf8(bytes).map_err(|e| {
        ConfigError::new(format!(
            "{}: not UTF-8 text (first bad byte at offset {}): TOML files must be UTF-8",
            file.display(),
            e.utf8_error().valid_up_to()
        ))
    })?;
    load_text(file, &text, overrides)
}

/// The largest experiment file read: the shipped ones are a few KB; a matrix of 100,000 entries
/// written out is under this.
pub const MAX_FILE_BYTES: u64 = 8 << 20;

/// The file's bytes, when it is a regular file of at most [`MAX_FILE_BYTES`]: a FIFO would block
/// forever and `/dev/zero` would fill the memory, so neither is opened for reading.
fn read_limited(file: &Path) -> Result<Vec<u8>, ConfigError> {
    use std::io::Read;
    let cannot = |e: std::io::Error| {
        ConfigError::new(format!(
            "cannot read experiment file {}: {e}",
            file.display()
        ))
    };
    let meta = std::fs::metadata(file).map_err(cannot)?;
    if !meta.is_file() {
        let kind = if meta.is_dir() {
            "a folder"
        } else {
            "not a regular file (a device, FIFO or socket)"
        };
        return Err(ConfigError::new(format!(
            "experiment file {} is {kind}: give the path of a TOML file",
            file.display()
        )));
    }
    let too_large = || {
        ConfigError::new(format!(
            "experiment file {} is larger than {} MiB: an experiment file holds settings, not data; list data in [dataset]",
            file.display(),
            MAX_FILE_BYTES >> 20
        ))
    };
    if meta.len() > MAX_FILE_BYTES {
        return Err(too_large());
    }
    let mut bytes = Vec::new();
    std::fs::File::open(file)
        .and_then(|f| f.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes))
        .map_err(cannot)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(too_large());
    }
    Ok(bytes)
}

/// [`load`] on text already read; `file` names it in messages and anchors relative paths.
/// (The fuzz target drives this directly.)
pub fn load_text(
    file: &Path,
    text: &str,
    overrides: &[String],
) -> Result<LoadedExperiment, ConfigError> {
    // Parse once ourselves: syntax errors then carry line and column, and the matrix's key order
    // survives (figment's maps are sorted).
    let table: toml::Table = toml::from_str(text).map_err(|e| {
        ConfigError::new(format!(
            "{}{}: TOML syntax error: {}",
            file.display(),
            span_location(text, e.span()),
            e.message().trim()
        ))
    })?;

    // Before any value is parsed: figment reads these values recursively.
    let env_overrides = runner_variables()?;
    let mut figment = Figment::new()
        .merge(Toml::string(text))
        .merge(env_provider());
    let file_models: Vec<&str> = table
        .get("models")
        .and_then(|m| m.as_table())
        .map(|m| m.keys().map(String::as_str).collect())
        .unwrap_or_default();
    for raw in overrides {
        figment = figment.merge(SetOverride::parse(raw, &file_models)?);
    }
    let origin = Origin::new(file, text, &figment);
    let mut config: ExperimentConfig = figment
        .extract()
        .map_err(|e| figment_to_config_error(e, &origin))?;
    config.matrix.axis_order = axis_order(&table);

    // Empty for a file in the working directory, so resolved paths print as the user wrote them.
    let base_dir = file.parent().unwrap_or(Path::new("")).to_path_buf();
    let loaded = LoadedExperiment {
        config,
        file: file.to_path_buf(),
        base_dir,
        overrides: overrides.to_vec(),
        env_overrides,
    };
    validate(&loaded, &origin)?;
    // After validation, which refuses an explicit true where it cannot run.
    let mut loaded = loaded;
    let has_encoder = loaded.config.models.values().any(|m| m.encoder().is_some());
    loaded.config.device.resolve_fused_embeddings(has_encoder);
    loaded.config.device.resolve_pair_norms(has_encoder);
    loaded
        .config
        .device
        .resolve_kernel_defaults(has_encoder, |key| device_key_given(&figment, key));
    Ok(loaded)
}

/// Whether the file, a `RUNNER_` variable or `--set` gave `device.<key>` (the figment merges all
/// three), so a default that depends on the build is not put in its place.
fn device_key_given(figment: &Figment, key: &str) -> bool {
    figment.find_value(&format!("device.{key}")).is_ok()
}

/// The deepest nesting of lists and tables any value of an experiment needs (`matrix.include` is a
/// list of tables: 2); a value nested thousands deep would overflow the stack while parsed.
pub(super) const MAX_VALUE_DEPTH: usize = 16;

/// How deeply `value` nests lists and tables (brackets and braces outside quoted strings).
pub(super) fn nesting_depth(value: &str) -> usize {
    let (mut depth, mut deepest) = (0usize, 0usize);
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for c in value.chars() {
        match quote {
            Some(q) => {
                if escaped {
                    escaped = false;
                } else if c == '\\' && q == '"' {
                    escaped = true;
                } else if c == q {
                    quote = None;
                }
            }
            None => match c {
                '"' | '\'' => quote = Some(c),
                '[' | '{' => {
                    depth += 1;
                    deepest = deepest.max(depth);
                }
                ']' | '}' => depth = depth.saturating_sub(1),
                _ => {}
            },
        }
    }
    deepest
}

/// The `RUNNER_SECTION__KEY` variables that take part, `NAME=value`, each checked before figment
/// parses it: a name of at most [`MAX_KEY_LEVELS`] levels, a UTF-8 value nested at most
/// [`MAX_VALUE_DEPTH`] deep. Variables of other programs (any name, any bytes) are not looked at.
fn runner_variables() -> Result<Vec<String>, ConfigError> {
    let mut found = Vec::new();
    let mut problems = Vec::new();
    for (name, value) in std::env::vars_os() {
        let Some(name) = name.to_str() else { continue };
        if !name.starts_with(ENV_PREFIX) || !name.contains("__") {
            continue;
        }
        let shown: String = name.chars().take(60).collect();
        let levels = name[ENV_PREFIX.len()..].split("__").count();
        if levels > MAX_KEY_LEVELS {
            problems.push(format!(
                "environment variable {shown}...: its name has {levels} levels; no key of an experiment has more than {MAX_KEY_LEVELS} (unset it)"
            ));
            continue;
        }
        let Some(value) = value.to_str() else {
            problems.push(format!(
                "environment variable {name}: its value is not UTF-8 text (unset it, or set it to a TOML value)"
            ));
            continue;
        };
        let depth = nesting_depth(value);
        if depth > MAX_VALUE_DEPTH {
            problems.push(format!(
                "environment variable {name}: its value nests lists or tables {depth} deep; no setting nests more than {MAX_VALUE_DEPTH} (unset it, or give the value the key takes)"
            ));
            continue;
        }
        found.push(format!("{name}={value}"));
    }
    if problems.is_empty() {
        Ok(found)
    } else {
        Err(ConfigError { problems })
    }
}

/// Says where a configuration value came from, for error messages: `file:line:column` when the
/// file set it, else the `--set` override or the `RUNNER_*` variable that did.
pub(super) struct Origin<'a> {
    file: &'a Path,
    text: &'a str,
    /// The file with byte spans; the text already parsed once, so this cannot fail in practice.
    spans: Option<toml::Spanned<toml::de::DeTable<'a>>>,
    figment: &'a Figment,
}

impl<'a> Origin<'a> {
    fn new(file: &'a Path, text: &'a str, figment: &'a Figment) -> Self {
        Self {
            file,
            text,
            spans: toml::de::DeTable::parse(text).ok(),
            figment,
        }
    }

    /// Who set the value at `path` (e.g. `["matrix", "batch_size", "1"]`): an override or
    /// environment variable when one did, else the file, with the value's line and column.
    pub(super) fn of(&self, path: &[String]) -> String {
        self.source(self.metadata_at(path), path, false)
    }

    /// The provider of the value at `path`, walked key by key: figment's own lookup splits a
    /// dotted string, which would cut a model name such as `qwen2.5-0.5b` in three.
    fn metadata_at(&self, path: &[String]) -> Option<&Metadata> {
        let keys = keys_of(path);
        let (first, rest) = keys.split_first()?;
        let mut value = self.figment.find_value(first).ok()?;
        for key in rest {
            value = value.into_dict()?.remove(*key)?;
        }
        self.figment.get_metadata(value.tag())
    }

    /// Names the provider `md` that set the value at `path` (figment's metadata): the override,
    /// the variable, or the file with the value's (or, when `key_itself`, the key's) position.
    fn source(&self, md: Option<&Metadata>, path: &[String], key_itself: bool) -> String {
        match md {
            Some(md) if md.name.starts_with("--set") => md.name.to_string(),
            Some(md) if md.name.contains("environment") => env_var_name(&keys_of(path)),
            _ => self.in_file(path, key_itself),
        }
    }

    /// `file:line:column` of the value at `path` (of its key when `key_itself`); just `file` when
    /// the file does not hold that path.
    fn in_file(&self, path: &[String], key_itself: bool) -> String {
        let span = self
            .spans
            .as_ref()
            .and_then(|doc| span_of(doc.get_ref(), path, key_itself));
        format!("{}{}", self.file.display(), span_location(self.text, span))
    }
}

/// The key names of a path, without array indices (`matrix.batch_size[1]` -> matrix, batch_size).
fn keys_of(path: &[String]) -> Vec<&str> {
    path.iter()
        .map(String::as_str)
        .filter(|p| p.parse::<usize>().is_err())
        .collect()
}

fn env_var_name(path: &[&str]) -> String {
    format!(
        "environment variable {ENV_PREFIX}{}",
        path.join("__").to_ascii_uppercase()
    )
}

/// Byte span of the value (or key) at `path` in a parsed TOML document; array elements are
/// numeric parts. `None` when the file does not hold the path (the value came from elsewhere).
fn span_of(
    doc: &toml::de::DeTable<'_>,
    path: &[String],
    key_itself: bool,
) -> Option<std::ops::Range<usize>> {
    use toml::de::DeValue;
    let mut table = Some(doc);
    let mut array: Option<&toml::de::DeArray<'_>> = None;
    let mut found = None;
    for part in path {
        let (key_span, value) = if let Some(t) = table {
            let (k, v) = t.iter().find(|(k, _)| k.get_ref().as_ref() == part)?;
            (k.span(), v)
        } else if let Some(a) = array {
            let v = a.get(part.parse::<usize>().ok()?)?;
            (v.span(), v)
        } else {
            break;
        };
        found = Some(if key_itself { key_span } else { value.span() });
        (table, array) = match value.get_ref() {
            DeValue::Table(t) => (Some(t), None),
            DeValue::Array(a) => (None, Some(a)),
            _ => (None, None),
        };
    }
    found
}

/// Axis names in the order the file lists them, then the rest in canonical order.
fn axis_order(table: &toml::Table) -> Vec<String> {
    let mut order: Vec<String> = table
        .get("matrix")
        .and_then(|m| m.as_table())
        .map(|m| {
            m.keys()
                .filter(|k| AXES.contains(&k.as_str()))
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    for axis in AXES {
        if !order.iter().any(|a| a == axis) {
            order.push(axis.to_string());
        }
    }
    order
}

/// `:line:column` for a byte span of `text` (1-based, as editors count), so `file:line:column`
/// jumps to the spot in an editor or terminal.
fn span_location(text: &str, span: Option<std::ops::Range<usize>>) -> String {
    let Some(span) = span else {
        return String::new();
    };
    let before = &text[..span.start.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before
        .rsplit('\n')
        .next()
        .map(|l| l.chars().count() + 1)
        .unwrap_or(1);
    format!(":{line}:{column}")
}

/// The most dotted levels a `--set` key or `RUNNER_*` variable may have.
pub(super) const MAX_KEY_LEVELS: usize = 8;

/// Turns figment's errors into messages that name the source (file, variable or override) and
/// the full key path.
fn figment_to_config_error(err: figment::Error, origin: &Origin<'_>) -> ConfigError {
    use figment::error::Kind;
    let problems = err
        .into_iter()
        .map(|e| {
            let mut path = key_path(&e.path);
            let what = match &e.kind {
                Kind::UnknownField(field, expected) => {
                    if e.path.last() != Some(field) {
                        path = join_key(&path, field);
                    }
                    format!(
                        "unknown key `{path}`{}; allowed here: {}",
                        did_you_mean(field, expected.iter().copied()),
                        expected.join(", ")
                    )
                }
                Kind::MissingField(field) => {
                    if e.path.last().map(String::as_str) != Some(field.as_ref()) {
                        path = join_key(&path, field);
                    }
                    format!("missing required key `{path}`")
                }
                Kind::UnknownVariant(found, expected) => format!(
                    "`{path}`: unknown value \"{found}\"{}; expected one of: {}",
                    did_you_mean(found, expected.iter().copied()),
                    expected.join(", ")
                ),
                Kind::InvalidType(actual, expected) => {
                    format!(
                        "`{path}`: expected {}, found {actual}",
                        plain_type(expected)
                    )
                }
                other => {
                    if path.is_empty() {
                        other.to_string()
                    } else {
                        format!("`{path}`: {other}")
                    }
                }
            };
            // An unknown key is pointed at itself; anything else at its value.
            let key_itself = matches!(e.kind, Kind::UnknownField(..));
            let mut located = e.path.clone();
            if let Kind::UnknownField(field, _) = &e.kind {
                if e.path.last() != Some(field) {
                    located.push(field.clone());
                }
            }
            let source = origin.source(e.metadata.as_ref(), &located, key_itself);
            format!("{source}: {what}")
        })
        .collect();
    ConfigError { problems }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nesting_is_counted_outside_quoted_strings() {
        assert_eq!(nesting_depth("[{ scope = \"layers\" }]"), 2);
        assert_eq!(nesting_depth("\"[[[[\" "), 0);
        assert_eq!(nesting_depth("'{{{' [1]"), 1);
        assert_eq!(nesting_depth(&"[".repeat(1450)), 1450);
        assert_eq!(nesting_depth("\"a\\\"[\" [[]]"), 2);
    }

    #[test]
    fn span_location_counts_lines_and_columns_from_one() {
        let text = "a = 1\nb = [\nc";
        assert_eq!(span_location(text, Some(6..7)), ":2:1");
        assert_eq!(span_location(text, Some(10..11)), ":2:5");
        assert_eq!(span_location(text, None), "");
    }

    #[test]
    fn span_of_finds_values_keys_and_array_elements() {
        let text = "[matrix]\nbatch_size = [1, 20]\n[[matrix.include]]\nseq_len = 64\n";
        let doc = toml::de::DeTable::parse(text).unwrap();
        let at = |path: &[&str], key: bool| {
            let path: Vec<String> = path.iter().map(|p| p.to_string()).collect();
            span_location(text, span_of(doc.get_ref(), &path, key))
        };
        assert_eq!(at(&["matrix", "batch_size", "1"], false), ":2:18");
        assert_eq!(at(&["matrix", "batch_size"], true), ":2:1");
        assert_eq!(at(&["matrix", "include", "0", "seq_len"], false), ":4:11");
        // A path the file lacks stops at its deepest existing part.
        assert_eq!(at(&["matrix", "nothing"], false), "");
        assert_eq!(at(&["protocol", "repeats"], false), "");
    }

    #[test]
    fn a_device_key_is_given_by_the_file_or_by_set_only_where_written() {
        let file = |text: &str| Figment::new().merge(Toml::string(text));
        let given = |f: &Figment| device_key_given(f, "gemm_library");
        assert!(given(&file("[device]\ngemm_library = \"cublaslt\"\n")));
        assert!(!given(&file("[device]\nbackend = \"auto\"\n")));
        assert!(!given(&file("")));
        assert!(!device_key_given(
            &file("[device]\ngemm_library = \"cutlass\"\n"),
            "attention_padding"
        ));
        let set = SetOverride::parse("device.gemm_library=cublaslt", &[]).unwrap();
        assert!(given(&file("").merge(set)), "--set gives it too");
    }

    #[test]
    fn axis_order_follows_the_file_then_canonical_order() {
        let table: toml::Table =
            toml::from_str("[matrix]\nbatch_size = [1]\nprecision = [\"fp32\"]\n").unwrap();
        assert_eq!(
            axis_order(&table),
            [
                "batch_size",
                "precision",
                "model",
                "seq_len",
                "prompt_len",
                "new_tokens",
                "scope",
                "quantize",
                "layer_method"
            ]
        );
    }
}
