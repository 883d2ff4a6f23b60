//! Markdown escaping for report.md and compare.md: every value a Markdown template prints
//! (`*.md.j2`) is escaped by default, as minijinja's auto-escaping does for the HTML templates, so
//! what a user wrote or a run directory holds (names, paths, failure reasons, layer names, times,
//! run ids) reaches the Markdown as text, never as markup, whether or not the template remembered
//! a filter. Numbers print as they are; the filters below say how a value is to be shown and
//! return text already escaped:
//!
//! - `{{ x | md }}`: inline text, for table cells and paragraphs (newlines become spaces; with
//!   `md(lines=true)` they stay, each line escaped at its start)
//! - `{{ x | md_code }}`: an inline code span whose fence is longer than any backtick run in `x`
//!   (`md_code(table=false)` outside a table, where `\|` would show its backslash)
//! - `{{ x | md_fence("toml") }}`: a fenced block whose fence no line of `x` can close

use minijinja::value::{Kwargs, Value, ValueKind};
use minijinja::{AutoEscape, Error, Output, State};

/// The auto-escape mode of Markdown templates.
pub const MARKDOWN: AutoEscape = AutoEscape::Custom("markdown");

/// `*.md.j2` (and `*.md`) templates escape for Markdown; the rest as minijinja's default does
/// (HTML for `*.html.j2`).
pub fn auto_escape(name: &str) -> AutoEscape {
    let base = name.strip_suffix(".j2").unwrap_or(name);
    if base.ends_with(".md") {
        MARKDOWN
    } else {
        minijinja::default_auto_escape_callback(name)
    }
}

/// Prints a value in a Markdown template: safe strings (the filters' output) and numbers as they
/// are, any other value escaped as inline text.
pub fn formatter(out: &mut Output, state: &State, value: &Value) -> Result<(), Error> {
    if state.auto_escape() != MARKDOWN {
        return minijinja::escape_formatter(out, state, value);
    }
    let plain = value.is_safe()
        || matches!(
            value.kind(),
            ValueKind::Undefined | ValueKind::None | ValueKind::Bool | ValueKind::Number
        );
    let text = if plain {
        if value.is_undefined() || value.is_none() {
            String::new()
        } else {
            value.to_string()
        }
    } else {
        escape(&text_of(value), false)
    };
    out.write_str(&text).map_err(Error::from)
}

/// ASCII punctuation that starts or ends Markdown markup anywhere in a line (emphasis, code,
/// links, images, raw HTML, tables, strikethrough, entities, footnotes).
/// (`_` only where it can: inside a word it opens no emphasis; `>` only at a line's start.)
const INLINE: &[char] = &[
    '\\', '`', '*', '[', ']', '<', '|', '!', '~', '&', '#', '{', '}', '$', '^',
];

/// `text` as Markdown text that renders exactly as written.
pub fn escape(text: &str, keep_lines: bool) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    for (i, line) in text.split('\n').enumerate() {
        if i > 0 {
            out.push_str(if keep_lines { "\n" } else { " " });
        }
        let line = line.trim_end_matches('\r');
        let body = line.trim_start();
        out.push_str(&line[..line.len() - body.len()]);
        // What makes a block at a line's start (a value may land there): a list item (`- `,
        // `+ `, `1. `, `1) `: the marker then a space or the end), a quote (>), a setext underline
        // or rule (`=`, a line of `-`; `=` also starts a spreadsheet formula when a table is
        // pasted); headings and fences start with characters escaped everywhere. `-3.2` or a
        // version `0.1.0` starts nothing and stays as it is.
        let digits = body.chars().take_while(char::is_ascii_digit).count();
        let marker_then_space = |at: usize| {
            body[at..]
                .chars()
                .next()
                .is_none_or(|c| c == ' ' || c == '\t')
        };
        let rule = |c: char| !body.is_empty() && body.chars().all(|x| x == c || x == ' ');
        if body.starts_with(['>', '='])
            || (body.starts_with(['-', '+']) && marker_then_space(1))
            || rule('-')
        {
            out.push('\\');
        } else if digits > 0
            && body[digits..].starts_with(['.', ')'])
            && marker_then_space(digits + 1)
        {
            out.push_str(&body[..digits]);
            out.push('\\');
            push_inline(&mut out, &body[digits..]);
            continue;
        }
        push_inline(&mut out, body);
    }
    out
}

fn push_inline(out: &mut String, text: &str) {
    let chars: Vec<char> = text.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        let intraword = c == '_'
            && i > 0
            && chars[i - 1].is_alphanumeric()
            && chars.get(i + 1).is_some_and(|n| n.is_alphanumeric());
        if INLINE.contains(&c) || (c == '_' && !intraword) {
            out.push('\\');
            out.push(c);
        } else if c.is_control() && c != '\t' {
            out.push(' ');
        } else {
            out.push(c);
        }
    }
}

/// The longest run of backticks in `text`.
fn longest_backtick_run(text: &str) -> usize {
    let (mut best, mut run) = (0, 0);
    for c in text.chars() {
        run = if c == '`' { run + 1 } else { 0 };
        best = best.max(run);
    }
    best
}

/// `text` as one inline code span, on one line; in a table cell its pipes are escaped (GFM reads
/// `\|` inside a table's code span as a pipe).
pub fn code_span(text: &str, in_table: bool) -> String {
    let flat: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let flat = if in_table {
        flat.replace('|', "\\|")
    } else {
        flat
    };
    let fence = "`".repeat(longest_backtick_run(&flat) + 1);
    // A space each side keeps a leading or trailing backtick of the text off the fence.
    let pad = if flat.starts_with('`') || flat.ends_with('`') {
        " "
    } else {
        ""
    };
    format!("{fence}{pad}{flat}{pad}{fence}")
}

/// `text` as a fenced code block of `lang`: the fence is longer than any backtick run in it, so
/// no line of the text can close it. No newline after the closing fence.
pub fn fenced(text: &str, lang: &str) -> String {
    let fence = "`".repeat((longest_backtick_run(text) + 1).max(3));
    let lang: String = lang.chars().filter(|c| c.is_ascii_alphanumeric()).collect();
    let body = text.trim_end_matches('\n');
    format!("{fence}{lang}\n{body}\n{fence}")
}

fn text_of(value: &Value) -> String {
    if value.is_none() || value.is_undefined() {
        String::new()
    } else if let Some(s) = value.as_str() {
        s.to_string()
    } else {
        value.to_string()
    }
}

pub fn md_filter(value: Value, kwargs: Kwargs) -> Result<Value, minijinja::Error> {
    let lines: Option<bool> = kwargs.get("lines")?;
    kwargs.assert_all_used()?;
    Ok(Value::from_safe_string(escape(
        &text_of(&value),
        lines.unwrap_or(false),
    )))
}

pub fn md_code_filter(value: Value, kwargs: Kwargs) -> Result<Value, minijinja::Error> {
    let table: Option<bool> = kwargs.get("table")?;
    kwargs.assert_all_used()?;
    Ok(Value::from_safe_string(code_span(
        &text_of(&value),
        table.unwrap_or(true),
    )))
}

pub fn md_fence_filter(value: Value, lang: Option<String>) -> Value {
    Value::from_safe_string(fenced(&text_of(&value), lang.as_deref().unwrap_or("")))
}

/// Registers the filters, and Markdown auto-escaping, on a template environment.
pub fn register(env: &mut minijinja::Environment<'static>) {
    env.set_auto_escape_callback(auto_escape);
    env.set_formatter(formatter);
    env.add_filter("md", md_filter);
    env.add_filter("md_code", md_code_filter);
    env.add_filter("md_fence", md_fence_filter);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_cannot_open_markup() {
        assert_eq!(
            escape("```\n<script>x</script>\n# h [a](javascript:b) | c", false),
            "\\`\\`\\` \\<script>x\\</script> \\# h \\[a\\](javascript:b) \\| c"
        );
        assert_eq!(escape("- item\n1. two", true), "\\- item\n1\\. two");
        // Only a marker followed by a space starts a list; numbers and versions stay readable.
        assert_eq!(escape("-3.2 0.1.0", false), "-3.2 0.1.0");
        assert_eq!(escape("580.159.04", false), "580.159.04");
        assert_eq!(escape("1)", false), "1\\)");
        assert_eq!(escape("===", false), "\\===");
    }

    #[test]
    fn code_spans_and_fences_outlast_the_text() {
        assert_eq!(code_span("a``b|c", true), "```a``b\\|c```");
        assert_eq!(code_span("`x`", false), "`` `x` ``");
        assert_eq!(fenced("a\n```\nb\n", "toml"), "````toml\na\n```\nb\n````");
        assert_eq!(escape("x86_64 _a_ > b", false), "x86_64 \\_a\\_ > b");
        assert_eq!(escape("> quote", false), "\\> quote");
    }

    #[test]
    fn markdown_templates_escape_every_value_and_html_templates_stay_html() {
        let mut env = minijinja::Environment::new();
        register(&mut env);
        let t = "{{ x }} {{ n }} {{ x | md_code }}";
        env.add_template("a.md.j2", t).unwrap();
        env.add_template("a.html.j2", t).unwrap();
        let ctx = minijinja::context! { x => "<img src=x onerror=alert(1)> # h", n => 1.5 };
        let md = env.get_template("a.md.j2").unwrap().render(&ctx).unwrap();
        assert_eq!(
            md,
            "\\<img src=x onerror=alert(1)> \\# h 1.5 `<img src=x onerror=alert(1)> # h`"
        );
        let html = env.get_template("a.html.j2").unwrap().render(&ctx).unwrap();
        assert!(html.starts_with("&lt;img"), "{html}");
    }
}
