//! Live output: the pieces of each step's stdout and stderr that agents ship while the script
//! runs, and how they read as CloudWatch Logs (integration fact sheet §4 and §6; ARCHITECTURE.md,
//! "Live output").
//!
//! A stream is a byte sequence kept as chunks at byte offsets. The agent sends each chunk with its
//! offset; [`place`] decides what of it is new, so a resend after a lost answer, or after an agent
//! restart, never duplicates or loses a byte. Read as logs, every line of a chunk is one event
//! dated by the chunk's arrival, and a [`Position`] (arrival, chunk, line) orders events across
//! streams and names where a page stops.

use crate::clock::Millis;
use crate::command::{CloudWatchOutput, Report};
use crate::ids::{CommandId, InstanceId};

/// Which of a step's two output streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum OutputStream {
    Stdout,
    Stderr,
}

impl OutputStream {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stdout => "stdout",
            Self::Stderr => "stderr",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "stdout" => Some(Self::Stdout),
            "stderr" => Some(Self::Stderr),
            _ => None,
        }
    }
}

/// One step stream of one invocation.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StreamKey {
    pub command_id: CommandId,
    pub instance_id: InstanceId,
    /// The step's name (for schema 1.x documents the plugin name, e.g. `aws:runShellScript`).
    pub step: String,
    pub stream: OutputStream,
}

impl StreamKey {
    /// The CloudWatch log stream: `<CommandId>/<InstanceId>/<step>/stdout|stderr`, with `:` and
    /// `*` in the step name replaced by `-` (log stream names cannot hold them).
    pub fn log_stream_name(&self) -> String {
        format!(
            "{}/{}/{}/{}",
            self.command_id,
            self.instance_id,
            log_stream_step(&self.step),
            self.stream.as_str()
        )
    }
}

/// A step name as amazon-ssm-agent puts it into a log stream name.
pub fn log_stream_step(step: &str) -> String {
    step.chars()
        .map(|c| if c == ':' || c == '*' { '-' } else { c })
        .collect()
}

/// The default log group of a document: `/aws/ssm/<DocumentName>`, every character outside
/// `[a-zA-Z0-9_-/.#]` replaced by `.` (amazon-ssm-agent's `cleanupLogGroupName`).
pub fn default_log_group(document_name: &str) -> String {
    let cleaned: String = document_name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_-/.#".contains(c) {
                c
            } else {
                '.'
            }
        })
        .collect();
    format!("/aws/ssm/{cleaned}")
}

/// The log group a command's output lands in: none unless CloudWatch output is enabled; the
/// name the caller gave, as given, or the document's default.
pub fn log_group(cloudwatch: &CloudWatchOutput, document_name: &str) -> Option<String> {
    if !cloudwatch.enabled {
        return None;
    }
    Some(if cloudwatch.log_group_name.is_empty() {
        default_log_group(document_name)
    } else {
        cloudwatch.log_group_name.clone()
    })
}

/// What of a shipped piece (`len` bytes at `offset`) is new, given the `committed` bytes held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// Bytes from `skip` on extend the stream (the first `skip` are held already).
    Append { skip: usize },
    /// All of it is held already (a resend), or it is empty.
    Held,
    /// It starts past the end: bytes in between are missing, so nothing is taken and the sender
    /// resumes from `committed`.
    Gap,
}

pub fn place(committed: u64, offset: u64, len: usize) -> Placement {
    if offset > committed {
        return Placement::Gap;
    }
    let skip = usize::try_from(committed - offset).unwrap_or(usize::MAX);
    if skip >= len {
        Placement::Held
    } else {
        Placement::Append { skip }
    }
}

/// A piece of output as an agent ships it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewChunk {
    pub key: StreamKey,
    pub offset: u64,
    pub data: Vec<u8>,
    /// When the server received it.
    pub at: Millis,
}

/// The answer to a shipped piece: how many bytes of the stream the store holds now. The sender
/// continues from there, whatever it sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkAck {
    pub committed: u64,
}

/// Output a report carries whole, to be stored as its stream's only chunk when nothing of that
/// stream was shipped (a step that ended before the agent's first shipment, ARCHITECTURE.md
/// "Live output"). Only for commands whose output goes to a log group: everywhere else the
/// report's copy already is the whole stream.
pub fn report_chunks(report: &Report) -> Vec<(String, OutputStream, Vec<u8>)> {
    let mut out = Vec::new();
    for step in &report.steps {
        for (stream, text, cut) in [
            (OutputStream::Stdout, &step.stdout, step.stdout_truncated),
            (OutputStream::Stderr, &step.stderr, step.stderr_truncated),
        ] {
            if !cut && !text.is_empty() {
                out.push((step.name.clone(), stream, text.as_bytes().to_vec()));
            }
        }
    }
    out
}

/// A stored chunk as a reader of one command's output sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandChunk {
    /// Increases with every chunk stored: a reader resumes after the last id it saw.
    pub id: i64,
    pub instance_id: InstanceId,
    pub step: String,
    pub stream: OutputStream,
    pub offset: u64,
    pub data: Vec<u8>,
}

/// A stored chunk as the logs API reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogChunk {
    pub id: i64,
    pub at: Millis,
    pub log_stream: String,
    pub data: Vec<u8>,
}

/// A log group: every command whose output goes to that name contributes its streams.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogGroup {
    pub name: String,
    pub created_at: Millis,
    pub stored_bytes: u64,
}

/// A log stream (one step stream of one invocation) that has received data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogStream {
    pub name: String,
    pub created_at: Millis,
    pub first_event_at: Millis,
    pub last_event_at: Millis,
    pub stored_bytes: u64,
}

/// Which streams of a group a query reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamFilter {
    All,
    Names(Vec<String>),
    Prefix(String),
}

/// How DescribeLogStreams orders.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamOrder {
    Name,
    LastEventTime,
}

/// A DescribeLogStreams page request. `after` is the last stream of the previous page by the
/// order's key: a name, or (last event time, name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamQuery {
    pub group: String,
    pub prefix: String,
    pub order: StreamOrder,
    pub descending: bool,
    pub after: Option<(Millis, String)>,
    pub limit: usize,
}

/// Chunks of a group in (arrival, id) order from `from` on, or in reverse order from `from` back
/// when `backward` (`from` itself included both ways: a position inside it may be where a page
/// stops), within `[start, end)` by arrival.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkQuery {
    pub group: String,
    pub streams: StreamFilter,
    pub start: Option<Millis>,
    pub end: Option<Millis>,
    pub from: Option<(Millis, i64)>,
    pub backward: bool,
    pub limit: usize,
}

/// Where an event sits: its chunk's arrival and id, and its line in the chunk. Events order by
/// it across every stream of a group; a page token names the first (or, going back, the last)
/// position it has not returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Position {
    pub at: Millis,
    pub chunk: i64,
    pub line: u32,
}

impl Position {
    /// The event id: the position in 56 digits (the length of AWS's ids), so ids sort as
    /// positions do and the same event always has the same id.
    pub fn event_id(self) -> String {
        format!(
            "{:020}{:020}{:016}",
            self.at.max(0),
            self.chunk.max(0),
            self.line
        )
    }

    /// The text form used inside page tokens.
    pub fn encode(self) -> String {
        format!("{}.{}.{}", self.at, self.chunk, self.line)
    }

    pub fn decode(s: &str) -> Option<Self> {
        let mut parts = s.split('.');
        let at = parts.next()?.parse().ok()?;
        let chunk = parts.next()?.parse().ok()?;
        let line = parts.next()?.parse().ok()?;
        parts.next().is_none().then_some(Self { at, chunk, line })
    }
}

/// One log event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEvent {
    pub position: Position,
    pub log_stream: String,
    pub message: String,
}

/// The lines of a chunk: split at `\n`, the newline not part of the line; a chunk ending in a
/// newline has no empty last line. Invalid UTF-8 reads as U+FFFD.
pub fn chunk_lines(data: &[u8]) -> Vec<String> {
    let body = data.strip_suffix(b"\n").unwrap_or(data);
    if data.is_empty() {
        return Vec::new();
    }
    body.split(|b| *b == b'\n')
        .map(|l| String::from_utf8_lossy(l).into_owned())
        .collect()
}

/// The events of `chunk`, in line order.
pub fn chunk_events(chunk: &LogChunk) -> impl Iterator<Item = LogEvent> + '_ {
    chunk_lines(&chunk.data)
        .into_iter()
        .enumerate()
        .map(|(line, message)| LogEvent {
            position: Position {
                at: chunk.at,
                chunk: chunk.id,
                line: u32::try_from(line).unwrap_or(u32::MAX),
            },
            log_stream: chunk.log_stream.clone(),
            message,
        })
}

/// FilterLogEvents' `filterPattern`, in the subset fleetrun understands: terms separated by
/// spaces, each matched as a case-sensitive substring; a term in double quotes may hold spaces;
/// `-term` excludes; `?term` terms match when any of them does. An empty pattern matches all.
/// JSON (`{ … }`) and space-delimited (`[ … ]`) patterns are not supported.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FilterPattern {
    all: Vec<String>,
    any: Vec<String>,
    none: Vec<String>,
}

/// A pattern fleetrun cannot evaluate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Invalid filter pattern: {0}")]
pub struct BadPattern(pub String);

impl FilterPattern {
    pub fn parse(pattern: &str) -> Result<Self, BadPattern> {
        let trimmed = pattern.trim();
        if trimmed.starts_with('{') || trimmed.starts_with('[') {
            return Err(BadPattern(format!(
                "{pattern:?} (JSON and space-delimited patterns are not supported)"
            )));
        }
        let mut p = Self::default();
        let mut rest = trimmed;
        while !rest.is_empty() {
            let (kind, body) = match rest.as_bytes()[0] {
                b'-' => (2, &rest[1..]),
                b'?' => (1, &rest[1..]),
                _ => (0, rest),
            };
            let (term, next) = if let Some(quoted) = body.strip_prefix('"') {
                let end = quoted
                    .find('"')
                    .ok_or_else(|| BadPattern(format!("{pattern:?} (unclosed quote)")))?;
                (&quoted[..end], &quoted[end + 1..])
            } else {
                let end = body.find(' ').unwrap_or(body.len());
                (&body[..end], &body[end..])
            };
            if !term.is_empty() {
                let list = match kind {
                    1 => &mut p.any,
                    2 => &mut p.none,
                    _ => &mut p.all,
                };
                list.push(term.to_owned());
            }
            rest = next.trim_start();
        }
        Ok(p)
    }

    pub fn matches(&self, message: &str) -> bool {
        self.all.iter().all(|t| message.contains(t.as_str()))
            && (self.any.is_empty() || self.any.iter().any(|t| message.contains(t.as_str())))
            && !self.none.iter().any(|t| message.contains(t.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_agent() {
        let key = StreamKey {
            command_id: CommandId::parse("0b4b4c2f-9f1e-4a66-8a53-4f3f2a9e7e11").expect("id"),
            instance_id: InstanceId::parse("mi-0123456789abcdef0").expect("id"),
            step: "aws:runShellScript".into(),
            stream: OutputStream::Stdout,
        };
        assert_eq!(
            key.log_stream_name(),
            "0b4b4c2f-9f1e-4a66-8a53-4f3f2a9e7e11/mi-0123456789abcdef0/aws-runShellScript/stdout"
        );
        assert_eq!(
            default_log_group("AWS-RunShellScript"),
            "/aws/ssm/AWS-RunShellScript"
        );
        assert_eq!(default_log_group("My Doc:v2"), "/aws/ssm/My.Doc.v2");
        let on = CloudWatchOutput {
            log_group_name: String::new(),
            enabled: true,
        };
        assert_eq!(
            log_group(&on, "Doc").as_deref(),
            Some("/aws/ssm/Doc"),
            "default"
        );
        let named = CloudWatchOutput {
            log_group_name: "my group".into(),
            enabled: true,
        };
        assert_eq!(log_group(&named, "Doc").as_deref(), Some("my group"));
        let off = CloudWatchOutput {
            log_group_name: "x".into(),
            enabled: false,
        };
        assert_eq!(log_group(&off, "Doc"), None);
    }

    #[test]
    fn placement_takes_only_new_bytes() {
        assert_eq!(place(0, 0, 5), Placement::Append { skip: 0 });
        assert_eq!(place(5, 0, 5), Placement::Held, "a resend");
        assert_eq!(place(5, 3, 5), Placement::Append { skip: 2 }, "an overlap");
        assert_eq!(place(5, 6, 5), Placement::Gap);
        assert_eq!(place(5, 5, 0), Placement::Held, "a probe");
        assert_eq!(place(0, 0, 0), Placement::Held);
    }

    #[test]
    fn lines_and_positions() {
        assert_eq!(chunk_lines(b"a\nb\n"), vec!["a", "b"]);
        assert_eq!(chunk_lines(b"a\n\nb"), vec!["a", "", "b"]);
        assert_eq!(chunk_lines(b"\n"), vec![""]);
        assert!(chunk_lines(b"").is_empty());
        assert_eq!(chunk_lines(b"\xff\n"), vec!["\u{fffd}"]);
        let p = Position {
            at: 1_700_000_000_000,
            chunk: 42,
            line: 7,
        };
        assert_eq!(p.event_id().len(), 56);
        assert_eq!(Position::decode(&p.encode()), Some(p));
        assert_eq!(Position::decode("1.2"), None);
        assert_eq!(Position::decode("1.2.3.4"), None);
        let later = Position { line: 8, ..p };
        assert!(p.event_id() < later.event_id());
    }

    #[test]
    fn filter_patterns() {
        let all = FilterPattern::parse("").expect("empty");
        assert!(all.matches("anything"));
        let p = FilterPattern::parse("ERROR disk").expect("terms");
        assert!(p.matches("ERROR: disk full"));
        assert!(!p.matches("ERROR: cpu"));
        let q = FilterPattern::parse("\"disk full\" -warn").expect("quoted");
        assert!(q.matches("the disk full"));
        assert!(!q.matches("warn: disk full"));
        let any = FilterPattern::parse("?ERROR ?FATAL").expect("any");
        assert!(any.matches("FATAL x") && any.matches("ERROR y") && !any.matches("INFO"));
        assert!(FilterPattern::parse("{ $.a = 1 }").is_err());
        assert!(FilterPattern::parse("\"open").is_err());
    }
}
