//! Words for a POSIX shell: the commands and overrides that reports and the console show for
//! pasting. A leaf, so that every layer that prints a command (report, run, scale) quotes alike.

/// `s` as one shell word: as is when it is plainly safe, else single-quoted.
pub fn shell_quote(s: &str) -> String {
    if s.chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_./=:,".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// A path as one shell word that no command reads as an option: a relative path that starts
/// with `-` becomes `./-...`, then [`shell_quote`].
pub fn shell_path(path: &str) -> String {
    if path.starts_with('-') {
        shell_quote(&format!("./{path}"))
    } else {
        shell_quote(path)
    }
}

/// `NAME=value` as a shell assignment, the value quoted (the name is a plain identifier).
pub fn shell_assignment(s: &str) -> String {
    match s.split_once('=') {
        Some((name, value)) => format!("{name}={}", shell_quote(value)),
        None => shell_quote(s),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_quoted_so_a_shell_reads_them_back_as_written() {
        assert_eq!(shell_quote("a.b=1"), "a.b=1");
        assert_eq!(
            shell_quote(r#"experiment.description="a'b $(touch X)""#),
            r#"'experiment.description="a'\''b $(touch X)"'"#
        );
        assert_eq!(
            shell_assignment("RUNNER_EXPERIMENT__DESCRIPTION=$(id)"),
            "RUNNER_EXPERIMENT__DESCRIPTION='$(id)'"
        );
        assert_eq!(shell_path("-x y.toml"), "'./-x y.toml'");
        assert_eq!(shell_path("exp.toml"), "exp.toml");
    }
}
