//! Output excerpts exactly as the API reports them (fact sheet §9).
//!
//! The server keeps the full stdout/stderr; these functions cut what each API field may carry.
//! Lengths are counted in characters (the API limits are character limits).

/// GetCommandInvocation.StandardOutputContent limit.
pub const STDOUT_LIMIT: usize = 24_000;
/// GetCommandInvocation.StandardErrorContent limit.
pub const STDERR_LIMIT: usize = 8_000;
/// CommandPlugin.Output limit.
pub const PLUGIN_OUTPUT_LIMIT: usize = 2_500;

const TRUNCATED: &str = "--output truncated--";
const ERROR_TITLE: &str = "\n----------ERROR-------\n";
const OUTPUT_TRUNCATED: &str = "\n---Output truncated---";
const ERROR_TRUNCATED: &str = "\n---Error truncated----";

fn char_len(s: &str) -> usize {
    s.chars().count()
}

fn take_chars(s: &str, n: usize) -> &str {
    match s.char_indices().nth(n) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// The agent's `StringPrefix`: a string of `max` characters or more is cut so that it ends with the
/// marker and is exactly `max` characters long.
pub fn prefix_with_marker(s: &str, max: usize, marker: &str) -> String {
    if char_len(s) < max {
        return s.to_string();
    }
    let keep = max.saturating_sub(char_len(marker));
    format!("{}{}", take_chars(s, keep), marker)
}

/// StandardOutputContent.
pub fn stdout_excerpt(stdout: &str) -> String {
    prefix_with_marker(stdout, STDOUT_LIMIT, TRUNCATED)
}

/// StandardErrorContent.
pub fn stderr_excerpt(stderr: &str) -> String {
    prefix_with_marker(stderr, STDERR_LIMIT, TRUNCATED)
}

/// CommandPlugin.Output: stdout, then the error title and stderr if there is any, within 2,500
/// characters. When both halves are too long each gets half; otherwise only the longer one is cut.
pub fn plugin_output(stdout: &str, stderr: &str) -> String {
    let (out_len, err_len) = (char_len(stdout), char_len(stderr));
    let title = if stderr.is_empty() { "" } else { ERROR_TITLE };
    let budget = PLUGIN_OUTPUT_LIMIT.saturating_sub(char_len(title));
    if out_len + err_len <= budget {
        return format!("{stdout}{title}{stderr}");
    }
    let half = budget / 2;
    let cut = |s: &str, room: usize, marker: &str| -> String {
        if char_len(s) <= room {
            s.to_string()
        } else {
            format!(
                "{}{}",
                take_chars(s, room.saturating_sub(char_len(marker))),
                marker
            )
        }
    };
    let (out_room, err_room) = if out_len > half && err_len > half {
        (half, budget - half)
    } else if out_len > err_len {
        (budget - err_len, err_len)
    } else {
        (out_len, budget - out_len)
    };
    format!(
        "{}{}{}",
        cut(stdout, out_room, OUTPUT_TRUNCATED),
        title,
        cut(stderr, err_room, ERROR_TRUNCATED)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_output_is_untouched() {
        assert_eq!(stdout_excerpt("hello\n"), "hello\n");
        assert_eq!(plugin_output("out", ""), "out");
        assert_eq!(
            plugin_output("out", "err"),
            "out\n----------ERROR-------\nerr"
        );
    }

    #[test]
    fn stdout_is_cut_at_24000_with_marker() {
        let big = "x".repeat(30_000);
        let cut = stdout_excerpt(&big);
        assert_eq!(cut.chars().count(), 24_000);
        assert!(cut.ends_with("--output truncated--"));
        // Exactly the limit is already cut, as the agent's `len < max` check does.
        assert!(stdout_excerpt(&"y".repeat(24_000)).ends_with(TRUNCATED));
        assert_eq!(stdout_excerpt(&"y".repeat(23_999)).len(), 23_999);
        assert_eq!(stderr_excerpt(&big).chars().count(), 8_000);
    }

    #[test]
    fn multibyte_characters_are_counted_not_bytes() {
        let big = "é".repeat(25_000);
        let cut = stdout_excerpt(&big);
        assert_eq!(cut.chars().count(), 24_000);
    }

    #[test]
    fn plugin_output_limits() {
        let out = "o".repeat(5000);
        let err = "e".repeat(5000);
        let both = plugin_output(&out, &err);
        assert!(both.chars().count() <= PLUGIN_OUTPUT_LIMIT);
        assert!(both.contains(OUTPUT_TRUNCATED) && both.contains(ERROR_TRUNCATED));
        let only_out = plugin_output(&out, "");
        assert_eq!(only_out.chars().count(), PLUGIN_OUTPUT_LIMIT);
        assert!(only_out.ends_with(OUTPUT_TRUNCATED));
        let long_out_short_err = plugin_output(&out, "boom");
        assert!(long_out_short_err.ends_with("\n----------ERROR-------\nboom"));
        assert!(long_out_short_err.chars().count() <= PLUGIN_OUTPUT_LIMIT);
    }
}
