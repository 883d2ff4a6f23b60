//! `--set KEY=VALUE` overrides. The key is a TOML key path: bare names joined by dots, and a name
//! holding dots (or other characters than letters, digits, `-` and `_`) in quotes, as the file
//! writes it (`models."qwen2.5-0.5b".decode_kernels`). The value is TOML, or a bare word taken as
//! a string.

use figment::value::{Dict, Map, Value};
use figment::{Metadata, Profile, Provider};

use super::load::{nesting_depth, MAX_KEY_LEVELS, MAX_VALUE_DEPTH};
use super::suggest::toml_key;
use crate::error::ConfigError;

/// What every refused `--set` is shown next to.
const EXAMPLES: &str = "expected KEY=VALUE, e.g. --set protocol.repeats=3, --set matrix.batch_size=[8,16], or with a name that holds dots quoted as the file quotes it: --set 'models.\"qwen2.5-0.5b\".decode_kernels=fused'";

/// A `--set key.path=value` override as a figment provider, so errors name the override.
pub(super) struct SetOverride {
    raw: String,
    dict: Dict,
}

impl SetOverride {
    /// Parses `raw`. `file_models` are the models the file names, so that a dotted model name
    /// written without quotes (which the key path splits at its dots) is caught and the quoted
    /// form suggested.
    pub(super) fn parse(raw: &str, file_models: &[&str]) -> Result<Self, ConfigError> {
        let bad = |why: &str| ConfigError::new(format!("--set {raw}: {why} ({EXAMPLES})"));
        let (key, value) = split_at_equals(raw).ok_or_else(|| bad("no `=` after the key"))?;
        let parts = key_path(key.trim()).map_err(|why| bad(&why))?;
        if let Some(why) = unquoted_model_name(&parts, value, file_models) {
            return Err(ConfigError::new(format!("--set {raw}: {why}")));
        }
        if nesting_depth(value) > MAX_VALUE_DEPTH {
            return Err(bad(&format!(
                "the value nests lists or tables more than {MAX_VALUE_DEPTH} deep; no setting needs that"
            )));
        }
        // The value is TOML (numbers, booleans, arrays, quoted strings); a bare word is a string,
        // so `--set experiment.name=trial` works without shell-quoted quotes.
        let parsed: Value = match toml::from_str::<toml::Table>(&format!("v = {value}")) {
            Ok(mut t) => to_figment_value(t.remove("v").expect("key v was just parsed")),
            Err(_) => Value::from(value.to_string()),
        };
        let mut nested = parsed;
        for part in parts.iter().skip(1).rev() {
            let mut d = Dict::new();
            d.insert(part.clone(), nested);
            nested = Value::from(d);
        }
        let mut dict = Dict::new();
        dict.insert(parts[0].clone(), nested);
        Ok(Self {
            raw: raw.to_string(),
            dict,
        })
    }
}

/// The key and the value of `KEY=VALUE`, split at the first `=` outside a quoted key name (a
/// quoted name may hold `=`; the value may hold anything). With a quote left open, at the first
/// `=`, so the key's parse says what is wrong with it.
fn split_at_equals(raw: &str) -> Option<(&str, &str)> {
    let at = outside_quotes(raw, '=').next().or_else(|| raw.find('='))?;
    Some((&raw[..at], &raw[at + 1..]))
}

/// Where `wanted` occurs in `text` outside TOML's quoted names (`"..."` with backslash escapes,
/// `'...'` literal).
fn outside_quotes(text: &str, wanted: char) -> impl Iterator<Item = usize> + '_ {
    let mut quote: Option<char> = None;
    let mut escaped = false;
    text.char_indices().filter_map(move |(i, c)| {
        match quote {
            Some(_) if escaped => escaped = false,
            Some('"') if c == '\\' => escaped = true,
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '"' || c == '\'' => quote = Some(c),
            None if c == wanted => return Some(i),
            None => {}
        }
        None
    })
}

/// The names of a TOML key path, parsed by the toml crate so a key means here what it means in
/// the file: `a.b`, `a . b`, `models."qwen2.5-0.5b".x` and `models.'llama-3.2-1b'.x` all work.
fn key_path(key: &str) -> Result<Vec<String>, String> {
    if key.is_empty() {
        return Err("empty key".to_string());
    }
    if key.chars().any(char::is_control) {
        return Err("the key holds a control character (a newline or tab)".to_string());
    }
    // Counted before the parser sees it: tens of thousands of levels nest as many tables.
    // (Dots outside quotes: an upper bound where the key is malformed.)
    let levels = outside_quotes(key, '.').count() + 1;
    if levels > MAX_KEY_LEVELS {
        return Err(format!(
            "the key has {levels} levels; no key of an experiment has more than {MAX_KEY_LEVELS}"
        ));
    }
    let not_a_path = |why: &str| {
        format!(
            "`{key}` is not a key path ({why}): join names with dots, and quote a name that holds dots or other characters than letters, digits, '-' and '_'"
        )
    };
    let mut table: toml::Table =
        toml::from_str(&format!("{key} = 0")).map_err(|e| not_a_path(e.message().trim()))?;
    let mut parts = Vec::new();
    loop {
        if table.len() != 1 {
            return Err(not_a_path("it is not one key"));
        }
        let (name, value) = table.into_iter().next().expect("one entry");
        if name.is_empty() {
            return Err(not_a_path("a name is empty"));
        }
        parts.push(name);
        match value {
            toml::Value::Table(t) => table = t,
            toml::Value::Integer(0) => return Ok(parts),
            _ => return Err(not_a_path("it is not one key")),
        }
    }
}

/// When `models.qwen2.5-0.5b.x` names no model of the file but its parts joined by dots do
/// (`qwen2.5-0.5b`), the message that says how to quote it.
fn unquoted_model_name(parts: &[String], value: &str, file_models: &[&str]) -> Option<String> {
    if parts.len() < 3 || parts[0] != "models" || file_models.contains(&parts[1].as_str()) {
        return None;
    }
    (3..=parts.len()).find_map(|end| {
        let name = parts[1..end].join(".");
        file_models.contains(&name.as_str()).then(|| {
            let mut key = vec!["models", name.as_str()];
            key.extend(parts[end..].iter().map(String::as_str));
            let suggestion = format!("{}={value}", toml_key(&key));
            format!(
                "the file has no model `{}`, but it has `{name}`, whose dots the key path splits at: quote the name as the file does: --set '{}'",
                parts[1],
                suggestion.replace('\'', r"'\''")
            )
        })
    })
}

fn to_figment_value(v: toml::Value) -> Value {
    Value::serialize(v).expect("a TOML value always serializes")
}

impl Provider for SetOverride {
    fn metadata(&self) -> Metadata {
        Metadata::named(format!("--set {}", self.raw))
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        Ok(Profile::Default.collect(self.dict.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(raw: &str) -> Vec<String> {
        let o = SetOverride::parse(raw, &[]).unwrap();
        let mut out = Vec::new();
        let (mut key, mut value) = o.dict.iter().next().unwrap();
        loop {
            out.push(key.clone());
            match value.as_dict() {
                Some(d) => (key, value) = d.iter().next().unwrap(),
                None => return out,
            }
        }
    }

    #[test]
    fn set_override_parses_toml_values_and_bare_words() {
        let o = SetOverride::parse("protocol.repeats=3", &[]).unwrap();
        let protocol = o.dict["protocol"].as_dict().unwrap();
        assert_eq!(protocol["repeats"].to_i128(), Some(3));
        let o = SetOverride::parse("matrix.batch_size=[8,16]", &[]).unwrap();
        let list = o.dict["matrix"].as_dict().unwrap()["batch_size"]
            .as_array()
            .unwrap()
            .len();
        assert_eq!(list, 2);
        let o = SetOverride::parse("experiment.name=trial", &[]).unwrap();
        assert_eq!(
            o.dict["experiment"].as_dict().unwrap()["name"].as_str(),
            Some("trial")
        );
        assert!(SetOverride::parse("novalue", &[]).is_err());
        assert!(SetOverride::parse("a..b=1", &[]).is_err());
    }

    #[test]
    fn quoted_names_keep_their_dots_as_in_toml() {
        assert_eq!(
            names(r#"models."qwen2.5-0.5b".decode_kernels="fused""#),
            ["models", "qwen2.5-0.5b", "decode_kernels"]
        );
        assert_eq!(
            names("models.'llama-3.2-1b'.layers=2"),
            ["models", "llama-3.2-1b", "layers"]
        );
        assert_eq!(names(" protocol . repeats =3"), ["protocol", "repeats"]);
        // An `=` inside a quoted name is part of the name, not the separator.
        assert_eq!(
            names(r#"models."a=b".layers=2"#),
            ["models", "a=b", "layers"]
        );
        let o = SetOverride::parse(r#"models."qwen2.5-0.5b".decode_kernels="fused""#, &[]).unwrap();
        let model = o.dict["models"].as_dict().unwrap()["qwen2.5-0.5b"]
            .as_dict()
            .unwrap();
        assert_eq!(model["decode_kernels"].as_str(), Some("fused"));
    }

    #[test]
    fn malformed_paths_name_the_flag_and_the_quoted_form() {
        for raw in [
            r#"models."qwen2.5-0.5b.decode_kernels=fused"#,
            "models.qwen 2.layers=1",
            "models.[x].layers=1",
            r#"models."".layers=1"#,
            "=1",
            "a.b\nc=1",
        ] {
            let msg = SetOverride::parse(raw, &[]).err().unwrap().to_string();
            assert!(msg.contains(&format!("--set {raw}:")), "{msg}");
            assert!(
                msg.contains(r#"'models."qwen2.5-0.5b".decode_kernels=fused'"#),
                "{msg}"
            );
        }
        let deep = format!("{}=1", ["a"; 9].join("."));
        let msg = SetOverride::parse(&deep, &[]).err().unwrap().to_string();
        assert!(msg.contains("the key has 9 levels"), "{msg}");
        // Dots inside quotes are not levels.
        assert!(SetOverride::parse(r#"models."a.b.c.d.e.f.g.h.i".layers=1"#, &[]).is_ok());
        // A huge key is refused before the TOML parser nests a table per level.
        assert!(SetOverride::parse(&format!("{}=1", "a.".repeat(100_000)), &[]).is_err());
    }

    #[test]
    fn an_unquoted_dotted_model_name_is_caught_with_the_quoted_form() {
        let models = ["qwen2.5-0.5b", "smollm2-135m"];
        let msg = SetOverride::parse("models.qwen2.5-0.5b.decode_kernels=fused", &models)
            .err()
            .unwrap()
            .to_string();
        assert!(msg.contains("no model `qwen2`"), "{msg}");
        assert!(
            msg.contains(r#"--set 'models."qwen2.5-0.5b".decode_kernels=fused'"#),
            "{msg}"
        );
        // A new model added by --set, or a name without dots, is left alone.
        assert!(SetOverride::parse("models.extra.architecture=llama", &models).is_ok());
        assert!(SetOverride::parse("models.smollm2-135m.layers=2", &models).is_ok());
        // The suggestion is quoted for a POSIX shell, a `'` in the value too.
        let msg = SetOverride::parse("models.qwen2.5-0.5b.x=it's", &models)
            .err()
            .unwrap()
            .to_string();
        assert!(
            msg.contains(r#"--set 'models."qwen2.5-0.5b".x=it'\''s'"#),
            "{msg}"
        );
    }
}
