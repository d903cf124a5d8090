//! Step output on the node's disk. A script's stdout and stderr are not piped through the agent:
//! they are the files `<step dir>/stdout` and `<step dir>/stderr` (mode 0600), written by the
//! script itself as it runs, so the agent holds none of it in memory and any size works. When the
//! step ends, only the beginning of each file is read back for the report, cut on a character
//! boundary and flagged when it is not the whole stream. The files stay for the work-dir retention
//! (`workdir`); a later upload to S3 reads them from there.

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use crate::AgentError;

/// Creates (or empties) an output file readable only by the agent's user.
pub(crate) fn create_output_file(path: &Path) -> Result<File, AgentError> {
    let io = |e| AgentError::io(format!("creating {}", path.display()), e);
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(io)?;
    // `mode` applies only to a new file; one left by an earlier run keeps its own.
    file.set_permissions(std::fs::Permissions::from_mode(0o600))
        .map_err(io)?;
    Ok(file)
}

/// The beginning of an output stream, as a report carries it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Prefix {
    /// At most `max_chars` characters, decoded lossily (invalid UTF-8 becomes U+FFFD).
    pub(crate) text: String,
    /// The stream is longer than `text`.
    pub(crate) truncated: bool,
    /// Bytes in the file when it was read (a process the script left behind may add more).
    pub(crate) file_bytes: u64,
}

/// Reads at most `max_chars` characters from the start of `path`. Only `4 * max_chars + 4` bytes
/// are read: no character takes more than four bytes, so that is always enough.
pub(crate) fn read_prefix(path: &Path, max_chars: usize) -> std::io::Result<Prefix> {
    let mut file = File::open(path)?;
    let limit = max_chars.saturating_mul(4).saturating_add(4);
    let mut bytes = Vec::new();
    (&mut file)
        .take(u64::try_from(limit).unwrap_or(u64::MAX))
        .read_to_end(&mut bytes)?;
    let file_bytes = file.metadata()?.len();
    let read = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
    let (text, truncated) = prefix_text(&bytes, read >= file_bytes, max_chars);
    Ok(Prefix {
        text,
        truncated,
        file_bytes: file_bytes.max(read),
    })
}

/// Decodes `bytes` (the whole stream when `whole`, else its beginning) and keeps `max_chars`
/// characters; true when the result is not the whole stream. A beginning cut through a multi-byte
/// character drops that character instead of showing U+FFFD for it.
pub(crate) fn prefix_text(bytes: &[u8], whole: bool, max_chars: usize) -> (String, bool) {
    let bytes = if whole {
        bytes
    } else {
        &bytes[..bytes.len() - incomplete_tail(bytes)]
    };
    let text = String::from_utf8_lossy(bytes);
    match text.char_indices().nth(max_chars) {
        Some((cut, _)) => (text[..cut].to_owned(), true),
        None => (text.into_owned(), !whole),
    }
}

/// Length of a multi-byte UTF-8 sequence cut short at the end of `b` (0 if there is none).
pub(crate) fn incomplete_tail(b: &[u8]) -> usize {
    for back in 1..=b.len().min(3) {
        let byte = b[b.len() - back];
        if byte & 0xC0 != 0x80 {
            // The last byte that is not a continuation byte: how long its sequence should be.
            let needed = match byte {
                0xC0..=0xDF => 2,
                0xE0..=0xEF => 3,
                0xF0..=0xF7 => 4,
                _ => 1,
            };
            return if needed > back { back } else { 0 };
        }
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_and_cut_streams() {
        assert_eq!(prefix_text(b"hello", true, 10), ("hello".into(), false));
        assert_eq!(prefix_text(b"hello", true, 3), ("hel".into(), true));
        // A beginning is truncated even when it fits.
        assert_eq!(prefix_text(b"hello", false, 10), ("hello".into(), true));
        // Invalid bytes of a whole stream are shown as U+FFFD, as the server would.
        assert_eq!(
            prefix_text(b"a\xffb", true, 10),
            ("a\u{fffd}b".into(), false)
        );
    }

    #[test]
    fn a_cut_through_a_character_drops_it() {
        let e = "é".as_bytes();
        let cut = [b"ab".as_slice(), &e[..1]].concat();
        assert_eq!(prefix_text(&cut, false, 10), ("ab".into(), true));
        let four = "😀".as_bytes();
        for n in 1..4 {
            let cut = [b"x".as_slice(), &four[..n]].concat();
            assert_eq!(prefix_text(&cut, false, 10), ("x".into(), true), "{n}");
        }
        let full = [b"x".as_slice(), four].concat();
        assert_eq!(prefix_text(&full, false, 10), ("x😀".into(), true));
        // An earlier invalid byte does not hide the cut at the end.
        let cut = [b"\xff".as_slice(), &e[..1]].concat();
        assert_eq!(prefix_text(&cut, false, 10), ("\u{fffd}".into(), true));
    }

    #[test]
    fn files_are_private_and_read_in_part() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("stdout");
        std::fs::write(&path, "x").expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        drop(create_output_file(&path).expect("create"));
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(std::fs::metadata(&path).expect("meta").len(), 0, "emptied");

        std::fs::write(&path, "😀".repeat(1000)).expect("write");
        let p = read_prefix(&path, 10).expect("read");
        assert_eq!(p.text, "😀".repeat(10));
        assert!(p.truncated);
        assert_eq!(p.file_bytes, 4000);
        let p = read_prefix(&path, 1000).expect("read");
        assert_eq!((p.text.chars().count(), p.truncated), (1000, false));
    }
}
