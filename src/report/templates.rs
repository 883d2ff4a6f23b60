//! Where the report templates come from (`--templates DIR`, `./templates`, or the copies built
//! into the binary), how a folder's templates are read, and the filters they may use.

use std::path::{Path, PathBuf};

use anyhow::Result;
use minijinja::{Environment, Value};

use super::markdown;

pub const HTML_TEMPLATE: &str = "report.html.j2";
pub const MD_TEMPLATE: &str = "report.md.j2";
const BUILTIN_HTML: &str = include_str!("../../templates/report.html.j2");
const BUILTIN_MD: &str = include_str!("../../templates/report.md.j2");

/// Where the report templates come from.
#[derive(Debug, Clone)]
pub enum TemplateSource {
    Dir(PathBuf),
    BuiltIn,
}

impl TemplateSource {
    /// `explicit` (from `--templates`) must hold both templates; otherwise `./templates` is used
    /// when it holds them, else the built-in copies.
    pub fn resolve(explicit: Option<&Path>) -> Result<Self> {
        let complete = |d: &Path| d.join(HTML_TEMPLATE).is_file() && d.join(MD_TEMPLATE).is_file();
        match explicit {
            Some(dir) if complete(dir) => Ok(Self::Dir(dir.to_path_buf())),
            Some(dir) => Err(crate::error::ConfigError::new(format!(
                "--templates {}: the folder must hold {HTML_TEMPLATE} and {MD_TEMPLATE}",
                dir.display()
            ))
            .into()),
            None if complete(Path::new("templates")) => Ok(Self::Dir(PathBuf::from("templates"))),
            None => Ok(Self::BuiltIn),
        }
    }

    /// Compiles both templates, so a syntax error in an edited one stops the run before the first
    /// cell instead of after the whole sweep.
    pub fn check(&self) -> Result<()> {
        let env = self.environment()?;
        for name in [HTML_TEMPLATE, MD_TEMPLATE] {
            if let Err(e) = env.get_template(name) {
                let at = match self {
                    Self::Dir(dir) => dir.join(name).display().to_string(),
                    Self::BuiltIn => format!("the built-in {name}"),
                };
                return Err(crate::error::ConfigError::new(format!(
                    "{at}: the report template does not compile: {e:#}; fix it (or pass --templates with a working copy) before measuring"
                ))
                .into());
            }
        }
        Ok(())
    }

    pub(super) fn environment(&self) -> Result<Environment<'static>> {
        let mut env = Environment::new();
        // Escaping is chosen as a template is added: the Markdown mode first.
        markdown::register(&mut env);
        env.add_filter("num", format_number);
        env.add_filter("sig", format_significant);
        // Overrides shown as the command line that set them: pasted, they set the same values
        // and run nothing else.
        env.add_filter("shell_quote", |s: String| crate::shell::shell_quote(&s));
        env.add_filter("shell_assignment", |s: String| {
            crate::shell::shell_assignment(&s)
        });
        match self {
            Self::Dir(dir) => env.set_loader(template_loader(dir.clone())),
            Self::BuiltIn => {
                env.add_template(HTML_TEMPLATE, BUILTIN_HTML)?;
                env.add_template(MD_TEMPLATE, BUILTIN_MD)?;
            }
        }
        Ok(env)
    }
}

/// Templates from `dir`, by name (one a template includes too): plain relative names only, each
/// read as a regular file within [`crate::files::limit::TEMPLATE`].
fn template_loader(
    dir: PathBuf,
) -> impl Fn(&str) -> std::result::Result<Option<String>, minijinja::Error> + Send + Sync + 'static
{
    move |name| {
        let plain = Path::new(name)
            .components()
            .all(|c| matches!(c, std::path::Component::Normal(_)));
        if !plain {
            return Ok(None);
        }
        crate::files::read_optional(&dir.join(name), crate::files::limit::TEMPLATE, "template")
            .map_err(|e| minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, e.0))?
            .map(|bytes| {
                String::from_utf8(bytes).map_err(|_| {
                    minijinja::Error::new(
                        minijinja::ErrorKind::InvalidOperation,
                        format!("template {name}: not UTF-8 text"),
                    )
                })
            })
            .transpose()
    }
}

/// `{{ value | num(2) }}`: fixed decimals, "n/a" for a missing value.
/// Digits need no escaping in any template; anything else is text, escaped where it lands.
pub(super) fn format_number(value: Value, digits: Option<usize>) -> Value {
    let digits = digits.unwrap_or(2);
    if value.is_none() || value.is_undefined() {
        return Value::from_safe_string("n/a".into());
    }
    match f64::try_from(value.clone()) {
        Ok(v) => Value::from_safe_string(format!("{v:.digits$}")),
        Err(_) => Value::from(value.to_string()),
    }
}

/// `{{ value | sig(3) }}`: significant digits, in scientific notation when small (a KL of
/// 4.8e-7 nats), "n/a" for a missing value.
fn format_significant(value: Value, digits: Option<usize>) -> Value {
    let digits = digits.unwrap_or(3).max(1);
    if value.is_none() || value.is_undefined() {
        return Value::from_safe_string("n/a".into());
    }
    match f64::try_from(value.clone()) {
        Ok(v) if v != 0.0 && v.abs() < 1e-3 => {
            Value::from_safe_string(format!("{v:.prec$e}", prec = digits - 1))
        }
        Ok(v) => {
            let magnitude = if v == 0.0 {
                0
            } else {
                v.abs().log10().floor() as i64
            };
            let decimals = (digits as i64 - 1 - magnitude).max(0) as usize;
            Value::from_safe_string(format!("{v:.decimals$}"))
        }
        Err(_) => Value::from(value.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_markup_is_written_outside_expressions() {
        // The Markdown mode escapes what an expression prints: `{{ "**x**" }}` renders as
        // `\*\*x\*\*`, literal asterisks. Markup belongs in the template text around it.
        for expr in BUILTIN_MD
            .split("{{")
            .skip(1)
            .filter_map(|t| t.split_once("}}"))
        {
            assert!(!expr.0.contains("**"), "{MD_TEMPLATE}: {{{{{}}}}}", expr.0);
        }
    }

    #[test]
    fn num_filter_formats_and_says_na_for_missing_values() {
        assert_eq!(
            format_number(Value::from(1.23456), Some(2)).as_str(),
            Some("1.23")
        );
        assert_eq!(
            format_number(Value::from(()), Some(2)).as_str(),
            Some("n/a")
        );
    }
}
