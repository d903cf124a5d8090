//! Output excerpts exactly as the API reports them (fact sheet §9).
//!
//! The server keeps the beginning of each step's stdout/stderr as the agent reported it (the whole
//! stream stays on the node); these functions cut what each API field may carry. Lengths are
//! counted in characters (the API limits are character limits). A stream the agent marked
//! truncated counts as longer than any limit: its views always end in the marker, even in the
//! rare report the agent had to shorten below a view's limit.

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
    Stream::whole(s).prefix(max, marker)
}

/// A stream as stored: its beginning, and whether that is not all of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stream<'a> {
    pub text: &'a str,
    pub truncated: bool,
}

impl<'a> Stream<'a> {
    /// A stream kept whole.
    pub fn whole(text: &'a str) -> Self {
        Self {
            text,
            truncated: false,
        }
    }

    /// Its length for the cutting rules: a truncated stream is longer than every limit.
    fn len(&self) -> usize {
        if self.truncated {
            usize::MAX
        } else {
            char_len(self.text)
        }
    }

    /// [`prefix_with_marker`], where a truncated stream is always cut.
    fn prefix(&self, max: usize, marker: &str) -> String {
        if self.len() < max {
            return self.text.to_string();
        }
        let keep = max.saturating_sub(char_len(marker));
        format!("{}{}", take_chars(self.text, keep), marker)
    }
}

/// StandardOutputContent.
pub fn stdout_excerpt(stdout: &str) -> String {
    stdout_view(Stream::whole(stdout))
}

/// StandardErrorContent.
pub fn stderr_excerpt(stderr: &str) -> String {
    stderr_view(Stream::whole(stderr))
}

/// StandardOutputContent of a stream that may be truncated.
pub fn stdout_view(stdout: Stream<'_>) -> String {
    stdout.prefix(STDOUT_LIMIT, TRUNCATED)
}

/// StandardErrorContent of a stream that may be truncated.
pub fn stderr_view(stderr: Stream<'_>) -> String {
    stderr.prefix(STDERR_LIMIT, TRUNCATED)
}

/// CommandPlugin.Output: stdout, then the error title and stderr if there is any, within 2,500
/// characters. When both halves are too long each gets half; otherwise only the longer one is cut.
pub fn plugin_output(stdout: &str, stderr: &str) -> String {
    plugin_view(Stream::whole(stdout), Stream::whole(stderr))
}

/// [`plugin_output`] of streams that may be truncated.
pub fn plugin_view(stdout: Stream<'_>, stderr: Stream<'_>) -> String {
    let (out_len, err_len) = (stdout.len(), stderr.len());
    let title = if stderr.text.is_empty() && !stderr.truncated {
        ""
    } else {
        ERROR_TITLE
    };
    let budget = PLUGIN_OUTPUT_LIMIT.saturating_sub(char_len(title));
    if out_len.saturating_add(err_len) <= budget {
        return format!("{}{title}{}", stdout.text, stderr.text);
    }
    let half = budget / 2;
    let cut = |s: Stream<'_>, room: usize, marker: &str| -> String {
        if s.len() <= room {
            s.text.to_string()
        } else {
            format!(
                "{}{}",
                take_chars(s.text, room.saturating_sub(char_len(marker))),
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

    /// What an agent sends of a stream: at most `keep` characters, flagged when cut.
    fn sent(s: &str, keep: usize) -> (String, bool) {
        (take_chars(s, keep).to_string(), char_len(s) > keep)
    }

    #[test]
    fn a_prefix_of_the_widest_view_gives_every_view_exactly() {
        // The agent sends 24,000 characters of stdout and 8,000 of stderr (wire's REPORT_*_CHARS).
        let lengths = [
            0, 5, 1_000, 1_239, 1_240, 2_500, 7_999, 8_000, 8_001, 23_999, 24_000, 24_001, 90_000,
        ];
        for &o in &lengths {
            for &e in &lengths {
                let (out, err) = ("o".repeat(o), "é".repeat(e));
                let (out_p, out_t) = sent(&out, STDOUT_LIMIT);
                let (err_p, err_t) = sent(&err, STDERR_LIMIT);
                let (so, se) = (
                    Stream {
                        text: &out_p,
                        truncated: out_t,
                    },
                    Stream {
                        text: &err_p,
                        truncated: err_t,
                    },
                );
                assert_eq!(stdout_view(so), stdout_excerpt(&out), "stdout {o}");
                assert_eq!(stderr_view(se), stderr_excerpt(&err), "stderr {e}");
                assert_eq!(
                    plugin_view(so, se),
                    plugin_output(&out, &err),
                    "plugin {o}/{e}"
                );
            }
        }
    }

    #[test]
    fn a_short_truncated_prefix_still_ends_in_the_marker() {
        // Only a many-step report shortened below a view's limit sends this.
        let s = Stream {
            text: "abc",
            truncated: true,
        };
        assert_eq!(stdout_view(s), format!("abc{TRUNCATED}"));
        assert_eq!(stderr_view(s), format!("abc{TRUNCATED}"));
        assert_eq!(
            plugin_view(s, Stream::whole("")),
            format!("abc{OUTPUT_TRUNCATED}")
        );
        let empty_cut = Stream {
            text: "",
            truncated: true,
        };
        assert_eq!(
            plugin_view(Stream::whole("out"), empty_cut),
            format!("out{ERROR_TITLE}{ERROR_TRUNCATED}")
        );
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
