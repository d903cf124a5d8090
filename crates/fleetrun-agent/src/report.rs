//! The size of a result report and the report sent when the server refuses one.
//!
//! [`fit`] keeps every report within [`MAX_REPORT_BYTES`] however many steps it has: when the
//! encoded report is larger, the longest streams are shortened to one common length (the smaller
//! ones stay whole) and marked truncated. A one-step report always fits unshortened, since its
//! streams are already cut to `REPORT_STDOUT_CHARS` / `REPORT_STDERR_CHARS` (`executor`).
//!
//! [`fallback`] is what the agent sends for a command whose report the server refused outright
//! (a 4xx other than authentication or throttling): Failed, the real response code, every step's
//! name, status and timings, no output, and a note on stderr naming the refusal, so the invocation
//! still ends. The channel decides when to send it.

use std::path::Path;

use fleetrun_wire::agent::{Outcome, ResultReport, MAX_REPORT_BYTES};

/// Bytes a report may gain after [`fit`]: `finishedAtMs` and `heldMs` are set when it is sent.
const SEND_SLACK: usize = 64;
/// What a stream's truncation flag adds to the encoding when it becomes true.
const FLAG_BYTES: usize = r#","stdoutTruncated":true"#.len();
/// Longest server message quoted in a fallback report.
const REFUSAL_CHARS: usize = 500;

/// The bound [`fit`] is applied with: [`MAX_REPORT_BYTES`] less what sending adds.
pub(crate) const FIT_BYTES: usize = MAX_REPORT_BYTES - SEND_SLACK;

/// Bytes of `report` encoded as JSON.
pub(crate) fn encoded_len(report: &ResultReport) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    // Serializing these plain structs cannot fail; a failure would only make `fit` cut more.
    match serde_json::to_writer(&mut count, report) {
        Ok(()) => count.0,
        Err(_) => usize::MAX,
    }
}

/// Bytes `c` takes inside a JSON string as serde_json writes it.
fn escaped_len(c: char) -> usize {
    match c {
        '"' | '\\' | '\n' | '\r' | '\t' | '\u{8}' | '\u{c}' => 2,
        c if u32::from(c) < 0x20 => 6,
        c => c.len_utf8(),
    }
}

fn escaped_str_len(s: &str) -> usize {
    s.chars().map(escaped_len).sum()
}

/// Cuts `s` to its longest beginning that takes at most `max` escaped bytes.
fn cut_escaped(s: &mut String, max: usize) {
    let mut used = 0;
    for (i, c) in s.char_indices() {
        used += escaped_len(c);
        if used > max {
            s.truncate(i);
            return;
        }
    }
}

/// The largest `level` with `sum(min(len, level)) <= room`, or `usize::MAX` if everything fits.
fn water_level(lens: &[usize], room: usize) -> usize {
    let mut sorted = lens.to_vec();
    sorted.sort_unstable();
    let mut left = room;
    for (i, &len) in sorted.iter().enumerate() {
        let streams = sorted.len() - i;
        match len.checked_mul(streams) {
            Some(all) if all <= left => left -= len,
            _ => return left / streams,
        }
    }
    usize::MAX
}

/// Every stream of `report` with its truncation flag.
fn streams(report: &mut ResultReport) -> impl Iterator<Item = (&mut String, &mut bool)> {
    report.steps.iter_mut().flat_map(|s| {
        [
            (&mut s.stdout, &mut s.stdout_truncated),
            (&mut s.stderr, &mut s.stderr_truncated),
        ]
    })
}

/// Shortens the longest streams of `report` until it encodes to at most `max_bytes`. If the steps
/// alone (names, codes) are larger, every stream is emptied; the server may then still refuse the
/// report, which [`fallback`] covers.
pub(crate) fn fit(report: &mut ResultReport, max_bytes: usize) {
    let size = encoded_len(report);
    if size <= max_bytes {
        return;
    }
    let lens: Vec<usize> = streams(report)
        .map(|(text, _)| escaped_str_len(text))
        .collect();
    let fixed = size.saturating_sub(lens.iter().sum());
    let room = max_bytes.saturating_sub(fixed + FLAG_BYTES * lens.len());
    let level = water_level(&lens, room);
    for ((text, truncated), len) in streams(report).zip(lens) {
        if len > level {
            cut_escaped(text, level);
            *truncated = true;
        }
    }
    if encoded_len(report) > max_bytes {
        for (text, truncated) in streams(report) {
            if !text.is_empty() {
                text.clear();
                *truncated = true;
            }
        }
    }
}

/// The report sent instead of `report` after the server refused it with `refusal` (see the
/// module header). Its output stays on the node under `command_dir/<step>/`.
pub(crate) fn fallback(report: &ResultReport, refusal: &str, command_dir: &Path) -> ResultReport {
    let refusal: String = refusal.chars().take(REFUSAL_CHARS).collect();
    let last = report.steps.len().saturating_sub(1);
    let steps = report
        .steps
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let mut step = s.clone();
            step.stdout.clear();
            step.stdout_truncated = false;
            step.stderr = if i == last {
                format!(
                    "fleetrun-agent: the server refused this command's result report ({refusal}); \
                     each step's output is kept on the node in {}/<step>/stdout and stderr\n",
                    command_dir.display()
                )
            } else {
                String::new()
            };
            step.stderr_truncated = false;
            step
        })
        .collect();
    let mut fallback = ResultReport {
        command_id: report.command_id.clone(),
        outcome: Outcome::Failed,
        response_code: report.response_code,
        elapsed_ms: report.elapsed_ms,
        steps,
        finished_at_ms: report.finished_at_ms,
        held_ms: 0,
    };
    fit(&mut fallback, FIT_BYTES);
    fallback
}

#[cfg(test)]
mod tests {
    use super::*;
    use fleetrun_wire::agent::StepReport;

    fn step(name: &str, stdout: &str, stderr: &str) -> StepReport {
        StepReport {
            name: name.into(),
            outcome: Outcome::Success,
            exit_code: 0,
            start_offset_ms: 0,
            duration_ms: 1,
            stdout: stdout.into(),
            stderr: stderr.into(),
            stdout_truncated: false,
            stderr_truncated: false,
        }
    }

    fn report(steps: Vec<StepReport>) -> ResultReport {
        ResultReport {
            command_id: "c".into(),
            outcome: Outcome::Success,
            response_code: 0,
            elapsed_ms: 1,
            steps,
            finished_at_ms: None,
            held_ms: 0,
        }
    }

    #[test]
    fn escaped_lengths_match_serde_json() {
        let mut all: String = (0u8..0x80).map(char::from).collect();
        all.push_str("é€😀\u{7f}\u{2028}");
        for c in all.chars() {
            let json = serde_json::to_string(&c.to_string()).expect("json");
            assert_eq!(escaped_len(c), json.len() - 2, "{c:?}");
        }
        assert_eq!(FLAG_BYTES, 23);
    }

    #[test]
    fn water_level_shares_the_room() {
        assert_eq!(water_level(&[1, 2, 3], 100), usize::MAX);
        assert_eq!(water_level(&[10, 100, 100], 110), 50);
        assert_eq!(water_level(&[10, 100, 100], 9), 3);
        assert_eq!(water_level(&[], 0), usize::MAX);
    }

    #[test]
    fn a_small_report_is_left_alone() {
        let mut r = report(vec![step("a", "out", "err")]);
        let before = r.clone();
        fit(&mut r, FIT_BYTES);
        assert_eq!(r, before);
    }

    #[test]
    fn many_big_steps_fit_with_the_longest_streams_cut() {
        let big = "\u{1}".repeat(24_000); // the worst case: six bytes a character
        let mut steps: Vec<StepReport> = (0..40)
            .map(|i| step(&format!("step{i}"), &big, &"e".repeat(8_000)))
            .collect();
        steps.push(step("short", "tiny", ""));
        let mut r = report(steps);
        assert!(encoded_len(&r) > 5 * MAX_REPORT_BYTES);
        fit(&mut r, FIT_BYTES);
        let size = encoded_len(&r);
        assert!(size <= FIT_BYTES, "{size}");
        assert!(size > FIT_BYTES - 2_000, "the room is used: {size}");
        assert!(r.steps[..40]
            .iter()
            .all(|s| s.stdout_truncated && s.stderr_truncated));
        let short = &r.steps[40];
        assert_eq!(
            (short.stdout.as_str(), short.stdout_truncated),
            ("tiny", false)
        );
        // The cut streams share the room: the same length each.
        assert!(r.steps[..40]
            .iter()
            .all(|s| s.stdout.len() == r.steps[0].stdout.len()));
    }

    #[test]
    fn steps_too_many_even_without_output_lose_all_output() {
        let name = "n".repeat(1_000);
        let mut r = report((0..600).map(|_| step(&name, "out", "err")).collect());
        fit(&mut r, FIT_BYTES);
        assert!(r
            .steps
            .iter()
            .all(|s| s.stdout.is_empty() && s.stdout_truncated));
    }

    #[test]
    fn the_fallback_names_the_refusal_and_keeps_the_steps() {
        let mut first = step("one", "out", "err");
        first.exit_code = 3;
        first.outcome = Outcome::Failed;
        let mut r = report(vec![first, step("two", &"x".repeat(24_000), "")]);
        r.response_code = 0;
        r.steps[1].stdout_truncated = true;
        r.finished_at_ms = Some(5);
        let f = fallback(&r, &"HTTP 413 too large".repeat(100), Path::new("/w/c"));
        assert_eq!(
            (f.outcome, f.response_code, f.finished_at_ms),
            (Outcome::Failed, 0, Some(5))
        );
        assert_eq!(f.steps.len(), 2);
        assert_eq!(
            (f.steps[0].exit_code, f.steps[0].outcome),
            (3, Outcome::Failed)
        );
        assert!(f
            .steps
            .iter()
            .all(|s| s.stdout.is_empty() && !s.stdout_truncated));
        assert!(f.steps[0].stderr.is_empty());
        let note = &f.steps[1].stderr;
        assert!(
            note.contains("HTTP 413 too large") && note.contains("/w/c/<step>/stdout"),
            "{note}"
        );
        assert!(note.len() < 1_000, "the refusal is quoted briefly");
    }
}
