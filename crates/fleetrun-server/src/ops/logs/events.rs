//! Reading events: FilterLogEvents across a group's streams and GetLogEvents along one stream,
//! both over the stored chunks in (arrival, chunk, line) order (`live_output::Position`). A page
//! holds at most `limit` events and about 1 MB of messages, and one call reads a bounded number of
//! chunks, so a pattern that matches nothing in a huge group still answers quickly (with a token
//! to go on, as CloudWatch Logs does).

use fleetrun_core::live_output::{
    chunk_events, ChunkQuery, FilterPattern, LogEvent, Position, StreamFilter, StreamOrder,
    StreamQuery,
};
use fleetrun_wire::logs as wire;

use super::{authorize, bad_token, group_not_found, limit, named_group};
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::AppState;

/// The most events a page may hold (the model's maximum and the default).
const MAX_EVENTS: i64 = 10_000;
/// Message bytes after which a page ends (CloudWatch Logs: "up to 1 MB").
const PAGE_BYTES: usize = 1024 * 1024;
/// Chunks fetched per store call.
const BATCH: usize = 64;
/// Chunks one call reads at most before it answers with what it has.
const SCAN_LIMIT: usize = 2_048;

/// Where a read of a range of chunks stands.
struct Page {
    events: Vec<LogEvent>,
    /// The first position not returned, when the read stopped before the end.
    next: Option<Position>,
}

/// Reads forward from `from` (inclusive), keeping events `keep` accepts, until `limit` events,
/// the byte budget, the scan limit or the end.
async fn read_forward(
    st: &AppState,
    mut query: ChunkQuery,
    from: Option<Position>,
    limit: usize,
    keep: impl Fn(&LogEvent) -> bool,
) -> ApiResult<Page> {
    let mut page = Page {
        events: Vec::new(),
        next: None,
    };
    let mut bytes = 0;
    let mut scanned = 0;
    let mut cursor = from;
    loop {
        query.from = cursor.map(|p| (p.at, p.chunk));
        query.backward = false;
        query.limit = BATCH;
        let chunks = st
            .store
            .log_chunks(query.clone())
            .await?
            .ok_or_else(group_not_found)?;
        let fetched = chunks.len();
        for chunk in &chunks {
            for event in chunk_events(chunk) {
                if cursor.is_some_and(|c| event.position < c) {
                    continue;
                }
                if page.events.len() >= limit || bytes >= PAGE_BYTES {
                    page.next = Some(event.position);
                    return Ok(page);
                }
                if keep(&event) {
                    bytes += event.message.len() + 26;
                    page.events.push(event);
                }
            }
        }
        scanned += fetched;
        let Some(last) = chunks.last() else {
            return Ok(page);
        };
        // Past every line of the last chunk read.
        cursor = Some(Position {
            at: last.at,
            chunk: last.id,
            line: u32::MAX,
        });
        if fetched < BATCH {
            return Ok(page);
        }
        if scanned >= SCAN_LIMIT {
            page.next = cursor;
            return Ok(page);
        }
    }
}

/// Reads backward from `before` (exclusive; the end when `None`): the `limit` events before it,
/// returned oldest first.
async fn read_backward(
    st: &AppState,
    mut query: ChunkQuery,
    before: Option<Position>,
    limit: usize,
) -> ApiResult<Vec<LogEvent>> {
    let mut out: Vec<LogEvent> = Vec::new();
    let mut cursor = before;
    let mut scanned = 0;
    loop {
        query.from = cursor.map(|p| (p.at, p.chunk));
        query.backward = true;
        query.limit = BATCH;
        let chunks = st
            .store
            .log_chunks(query.clone())
            .await?
            .ok_or_else(group_not_found)?;
        for chunk in &chunks {
            let mut events: Vec<LogEvent> = chunk_events(chunk).collect();
            events.reverse();
            for event in events {
                if cursor.is_some_and(|c| event.position >= c) {
                    continue;
                }
                out.push(event);
                if out.len() >= limit {
                    out.reverse();
                    return Ok(out);
                }
            }
        }
        scanned += chunks.len();
        let Some(last) = chunks.last() else { break };
        // Before every line of the last chunk read.
        cursor = Some(Position {
            at: last.at,
            chunk: last.id,
            line: 0,
        });
        if chunks.len() < BATCH || scanned >= SCAN_LIMIT {
            break;
        }
    }
    out.reverse();
    Ok(out)
}

fn position_token(prefix: &str, p: Position) -> String {
    format!("{prefix}{}", p.encode())
}

fn parse_token(token: &str, prefix: &str) -> Option<Position> {
    Position::decode(token.strip_prefix(prefix)?)
}

fn time_range(start: Option<i64>, end: Option<i64>) -> ApiResult<()> {
    for (name, v) in [("startTime", start), ("endTime", end)] {
        if v.is_some_and(|v| v < 0) {
            return Err(super::constraint(
                name,
                &v.unwrap_or_default().to_string(),
                "Member must have value greater than or equal to 0",
            ));
        }
    }
    Ok(())
}

pub async fn filter_log_events(
    st: AppState,
    caller: Caller,
    req: wire::FilterLogEventsRequest,
) -> ApiResult<wire::FilterLogEventsResponse> {
    let group = named_group(req.log_group_name, req.log_group_identifier)?;
    authorize(&st, &caller, "FilterLogEvents", &group)?;
    let streams = match (req.log_stream_names, req.log_stream_name_prefix) {
        (Some(_), Some(_)) => {
            return Err(ApiError::InvalidParameter(
                "logStreamNames and logStreamNamePrefix are mutually exclusive parameters.".into(),
            ))
        }
        (Some(names), None) => {
            if names.is_empty() || names.len() > 100 {
                return Err(super::constraint(
                    "logStreamNames",
                    &format!("{names:?}"),
                    "Member must have length between 1 and 100",
                ));
            }
            StreamFilter::Names(names)
        }
        (None, Some(prefix)) => StreamFilter::Prefix(prefix),
        (None, None) => StreamFilter::All,
    };
    time_range(req.start_time, req.end_time)?;
    let pattern = FilterPattern::parse(req.filter_pattern.as_deref().unwrap_or(""))
        .map_err(|e| ApiError::InvalidParameter(e.to_string()))?;
    let limit = limit(req.limit, MAX_EVENTS, MAX_EVENTS)?;
    let from = match &req.next_token {
        Some(t) => Some(parse_token(t, "e/").ok_or_else(bad_token)?),
        None => None,
    };
    let query = ChunkQuery {
        group,
        streams,
        start: req.start_time,
        // FilterLogEvents' endTime is inclusive ("later than this time are not returned").
        end: req.end_time.map(|t| t.saturating_add(1)),
        from: None,
        backward: false,
        limit: BATCH,
    };
    let page = read_forward(&st, query, from, limit, |e| pattern.matches(&e.message)).await?;
    Ok(wire::FilterLogEventsResponse {
        events: page
            .events
            .into_iter()
            .map(|e| wire::FilteredLogEvent {
                event_id: e.position.event_id(),
                timestamp: e.position.at,
                ingestion_time: e.position.at,
                log_stream_name: e.log_stream,
                message: e.message,
            })
            .collect(),
        searched_log_streams: Vec::new(),
        next_token: page.next.map(|p| position_token("e/", p)),
    })
}

pub async fn get_log_events(
    st: AppState,
    caller: Caller,
    req: wire::GetLogEventsRequest,
) -> ApiResult<wire::GetLogEventsResponse> {
    let group = named_group(req.log_group_name, req.log_group_identifier)?;
    authorize(&st, &caller, "GetLogEvents", &group)?;
    let stream = req.log_stream_name.unwrap_or_default();
    if stream.is_empty() || stream.contains([':', '*']) {
        return Err(super::constraint(
            "logStreamName",
            &stream,
            "Member must satisfy regular expression pattern: [^:*]*",
        ));
    }
    time_range(req.start_time, req.end_time)?;
    let limit = limit(req.limit, MAX_EVENTS, MAX_EVENTS)?;
    stream_exists(&st, &group, &stream).await?;
    let query = ChunkQuery {
        group,
        streams: StreamFilter::Names(vec![stream]),
        start: req.start_time,
        end: req.end_time,
        from: None,
        backward: false,
        limit: BATCH,
    };
    // A token says which way to go; without one, startFromHead does (default: the newest).
    let (forward, from) = match &req.next_token {
        Some(t) => match (parse_token(t, "f/"), parse_token(t, "b/")) {
            (Some(p), _) => (true, Some(p)),
            (None, Some(p)) => (false, Some(p)),
            (None, None) => return Err(bad_token()),
        },
        None => (req.start_from_head.unwrap_or(false), None),
    };
    let events = if forward {
        read_forward(&st, query, from, limit, |_| true)
            .await?
            .events
    } else {
        read_backward(&st, query, from, limit).await?
    };
    // At either end the token passed in comes back, which is how clients know they are done.
    let start = Position {
        at: 0,
        chunk: 0,
        line: 0,
    };
    let (next_forward_token, next_backward_token) = match (events.first(), events.last()) {
        (Some(first), Some(last)) => (
            position_token(
                "f/",
                Position {
                    line: last.position.line.saturating_add(1),
                    ..last.position
                },
            ),
            position_token("b/", first.position),
        ),
        _ => {
            let passed = req.next_token.clone();
            let here = from.unwrap_or(start);
            (
                passed
                    .clone()
                    .filter(|_| forward)
                    .unwrap_or_else(|| position_token("f/", here)),
                passed
                    .filter(|_| !forward)
                    .unwrap_or_else(|| position_token("b/", here)),
            )
        }
    };
    Ok(wire::GetLogEventsResponse {
        events: events
            .into_iter()
            .map(|e| wire::OutputLogEvent {
                timestamp: e.position.at,
                ingestion_time: e.position.at,
                message: e.message,
            })
            .collect(),
        next_forward_token,
        next_backward_token,
    })
}

async fn stream_exists(st: &AppState, group: &str, stream: &str) -> ApiResult<()> {
    let found = st
        .store
        .log_streams(StreamQuery {
            group: group.to_owned(),
            prefix: stream.to_owned(),
            order: StreamOrder::Name,
            descending: false,
            after: None,
            limit: 1,
        })
        .await?
        .ok_or_else(group_not_found)?;
    if found.first().is_some_and(|s| s.name == stream) {
        Ok(())
    } else {
        Err(ApiError::LogResourceNotFound(
            "The specified log stream does not exist.".into(),
        ))
    }
}
