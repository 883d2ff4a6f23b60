//! Text read back reaches a terminal (`runner report`'s table, `runner compare`'s lines, error
//! messages) as well as the reports: a control character in it (an escape sequence that clears
//! the screen or retitles the window, a carriage return that overwrites a line) is no text the
//! runner writes, so every string of a file read back is checked, wherever it sits.

use serde::Serialize;
use serde_json::Value;

use super::Problems;

/// Every string of `file` (keys included) is free of control characters other than a newline
/// or a tab (failure reasons and descriptions hold lines).
pub(super) fn no_control_characters(p: &mut Problems, file: &impl Serialize) {
    let Ok(value) = serde_json::to_value(file) else {
        return;
    };
    let mut found = None;
    walk(&value, &mut String::new(), &mut found);
    if let Some(at) = found {
        p.add(format!(
            "{at} holds a control character (an escape sequence or carriage return is no text the runner writes)"
        ));
    }
}

fn bad(s: &str) -> bool {
    s.chars().any(|c| c.is_control() && c != '\n' && c != '\t')
}

fn walk(v: &Value, at: &mut String, found: &mut Option<String>) {
    if found.is_some() {
        return;
    }
    match v {
        Value::String(s) if bad(s) => *found = Some(at.trim_start_matches('.').to_string()),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let len = at.len();
                at.push_str(&format!("[{i}]"));
                walk(item, at, found);
                at.truncate(len);
            }
        }
        Value::Object(map) => {
            for (key, item) in map {
                let len = at.len();
                if bad(key) {
                    *found = Some(format!("a key of {}", at.trim_start_matches('.')));
                    return;
                }
                at.push('.');
                at.push_str(key);
                walk(item, at, found);
                at.truncate(len);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn an_escape_sequence_anywhere_is_named_by_where_it_sits() {
        let check = |v: Value| {
            let mut p = Problems::new(Path::new("x.json"));
            no_control_characters(&mut p, &v);
            p.list
        };
        assert!(check(serde_json::json!({"reason": "a\n\tb", "n": 1})).is_empty());
        let found = check(serde_json::json!({"plan": [{"id": "x"}, {"model": "a\u{1b}[2J"}]}));
        assert!(
            found[0].starts_with("plan[1].model holds a control character"),
            "{found:?}"
        );
        let found = check(serde_json::json!({"run_id": "a\rb"}));
        assert!(found[0].starts_with("run_id holds"), "{found:?}");
    }
}
