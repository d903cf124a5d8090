//! Live output: shipped chunks of each step stream, and the CloudWatch Logs reads over them
//! (ARCHITECTURE.md, "Live output"). What a shipped piece adds is `live_output::place`'s rule;
//! this module holds the SQL and the transaction.

use fleetrun_core::clock::Millis;
use fleetrun_core::command::Report;
use fleetrun_core::ids::CommandId;
use fleetrun_core::live_output::{
    self, ChunkAck, ChunkQuery, CommandChunk, LogChunk, LogGroup, LogStream, NewChunk,
    OutputStream, Placement, StreamFilter, StreamKey, StreamOrder, StreamQuery,
};
use fleetrun_core::CoreError;
use rusqlite::types::Value;
use rusqlite::{params, params_from_iter, Connection, OptionalExtension};

use super::{instance_id, to_i64, Error, Result};

fn to_u64(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

pub(crate) fn append(conn: &mut Connection, chunk: &NewChunk) -> Result<ChunkAck> {
    let tx = conn.savepoint()?;
    let key = &chunk.key;
    let owner: Option<(i64, Option<String>)> = tx
        .prepare_cached(
            "SELECT c.seq, c.log_group FROM invocations i JOIN commands c ON c.seq = i.command_seq
             WHERE i.command_id = ?1 AND i.instance_id = ?2",
        )?
        .query_row(
            params![key.command_id.as_str(), key.instance_id.as_str()],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let Some((command_seq, log_group)) = owner else {
        return Err(CoreError::NoSuchInvocation(
            key.command_id.to_string(),
            key.instance_id.to_string(),
        )
        .into());
    };
    let stream: Option<(i64, i64)> = tx
        .prepare_cached(
            "SELECT id, committed FROM output_streams
             WHERE command_seq = ?1 AND instance_id = ?2 AND step = ?3 AND stream = ?4",
        )?
        .query_row(
            params![
                command_seq,
                key.instance_id.as_str(),
                key.step,
                key.stream.as_str()
            ],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let committed = stream.map_or(0, |(_, c)| to_u64(c));
    let skip = match live_output::place(committed, chunk.offset, chunk.data.len()) {
        Placement::Append { skip } => skip,
        Placement::Held | Placement::Gap => return Ok(ChunkAck { committed }),
    };
    let stream_id = match stream {
        Some((id, _)) => id,
        None => insert_stream(&tx, command_seq, log_group.as_deref(), key, chunk.at)?,
    };
    let data = &chunk.data[skip..];
    insert_chunk(
        &tx,
        stream_id,
        command_seq,
        log_group.as_deref(),
        chunk.at,
        committed,
        data,
    )?;
    tx.commit()?;
    Ok(ChunkAck {
        committed: committed + data.len() as u64,
    })
}

fn insert_stream(
    tx: &Connection,
    command_seq: i64,
    log_group: Option<&str>,
    key: &StreamKey,
    at: Millis,
) -> Result<i64> {
    tx.prepare_cached(
        "INSERT INTO output_streams (command_seq, instance_id, step, stream, log_group, log_stream,
             committed, created_at, first_event_at, last_event_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0, ?7, ?7, ?7)",
    )?
    .execute(params![
        command_seq,
        key.instance_id.as_str(),
        key.step,
        key.stream.as_str(),
        log_group,
        key.log_stream_name(),
        at
    ])?;
    Ok(tx.last_insert_rowid())
}

fn insert_chunk(
    tx: &Connection,
    stream_id: i64,
    command_seq: i64,
    log_group: Option<&str>,
    at: Millis,
    offset: u64,
    data: &[u8],
) -> Result<()> {
    tx.prepare_cached(
        "INSERT INTO output_chunks (stream_id, command_seq, log_group, at, byte_offset, data)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        stream_id,
        command_seq,
        log_group,
        at,
        i64::try_from(offset).unwrap_or(i64::MAX),
        data
    ])?;
    tx.prepare_cached(
        "UPDATE output_streams SET committed = committed + ?2, last_event_at = ?3 WHERE id = ?1",
    )?
    .execute(params![stream_id, to_i64(data.len()), at])?;
    Ok(())
}

/// Inside a finish: a report's whole streams become their stream's only chunk when the command
/// writes to a log group and nothing of that stream was shipped (`live_output::report_chunks`).
pub(crate) fn store_report_output(
    tx: &Connection,
    command_seq: i64,
    log_group: &str,
    instance: &fleetrun_core::ids::InstanceId,
    command_id: &CommandId,
    report: &Report,
    at: Millis,
) -> Result<()> {
    for (step, stream, data) in live_output::report_chunks(report) {
        let key = StreamKey {
            command_id: command_id.clone(),
            instance_id: instance.clone(),
            step,
            stream,
        };
        let exists: Option<i64> = tx
            .prepare_cached(
                "SELECT id FROM output_streams
                 WHERE command_seq = ?1 AND instance_id = ?2 AND step = ?3 AND stream = ?4",
            )?
            .query_row(
                params![command_seq, instance.as_str(), key.step, stream.as_str()],
                |r| r.get(0),
            )
            .optional()?;
        if exists.is_none() {
            let id = insert_stream(tx, command_seq, Some(log_group), &key, at)?;
            insert_chunk(tx, id, command_seq, Some(log_group), at, 0, &data)?;
        }
    }
    Ok(())
}

pub(crate) fn command_chunks(
    conn: &Connection,
    command: &CommandId,
    instance: Option<&str>,
    after: i64,
    limit: usize,
) -> Result<Vec<CommandChunk>> {
    let mut stmt = conn.prepare_cached(
        "SELECT o.id, s.instance_id, s.step, s.stream, o.byte_offset, o.data
         FROM commands c JOIN output_chunks o ON o.command_seq = c.seq
         JOIN output_streams s ON s.id = o.stream_id
         WHERE c.command_id = ?1 AND o.id > ?2 AND (?3 IS NULL OR s.instance_id = ?3)
         ORDER BY o.id LIMIT ?4",
    )?;
    let rows = stmt.query_map(
        params![command.as_str(), after, instance, to_i64(limit)],
        |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, i64>(4)?,
                r.get::<_, Vec<u8>>(5)?,
            ))
        },
    )?;
    let mut out = Vec::new();
    for row in rows {
        let (id, instance, step, stream, offset, data) = row?;
        out.push(CommandChunk {
            id,
            instance_id: instance_id(&instance)?,
            step,
            stream: OutputStream::parse(&stream)
                .ok_or_else(|| Error::Corrupt(format!("output stream {stream:?}")))?,
            offset: to_u64(offset),
            data,
        });
    }
    Ok(out)
}

/// `prefix` as a condition on `column` (SQLite's `substr` and `length` both count characters).
fn prefix_condition(column: &str, param: usize) -> String {
    format!("substr({column}, 1, length(?{param})) = ?{param}")
}

pub(crate) fn log_groups(
    conn: &Connection,
    prefix: &str,
    after: Option<&str>,
    limit: usize,
) -> Result<Vec<LogGroup>> {
    let sql = format!(
        "SELECT log_group, MIN(created_at), SUM(committed) FROM output_streams
         WHERE log_group IS NOT NULL AND {} AND log_group > ?2
         GROUP BY log_group ORDER BY log_group LIMIT ?3",
        prefix_condition("log_group", 1)
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(params![prefix, after.unwrap_or(""), to_i64(limit)], |r| {
        Ok(LogGroup {
            name: r.get(0)?,
            created_at: r.get(1)?,
            stored_bytes: to_u64(r.get(2)?),
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

fn group_exists(conn: &Connection, group: &str) -> Result<bool> {
    Ok(conn
        .prepare_cached("SELECT 1 FROM output_streams WHERE log_group = ?1 LIMIT 1")?
        .query_row([group], |_| Ok(()))
        .optional()?
        .is_some())
}

pub(crate) fn log_streams(conn: &Connection, q: &StreamQuery) -> Result<Option<Vec<LogStream>>> {
    if !group_exists(conn, &q.group)? {
        return Ok(None);
    }
    let (cmp, dir) = if q.descending {
        ("<", "DESC")
    } else {
        (">", "ASC")
    };
    let mut args: Vec<Value> = vec![q.group.clone().into(), q.prefix.clone().into()];
    let mut sql = format!(
        "SELECT log_stream, created_at, first_event_at, last_event_at, committed FROM output_streams
         WHERE log_group = ?1 AND {}",
        prefix_condition("log_stream", 2)
    );
    let order = match q.order {
        StreamOrder::Name => {
            if let Some((_, name)) = &q.after {
                sql.push_str(&format!(" AND log_stream {cmp} ?3"));
                args.push(name.clone().into());
            }
            format!("log_stream {dir}")
        }
        StreamOrder::LastEventTime => {
            if let Some((at, name)) = &q.after {
                sql.push_str(&format!(" AND (last_event_at, log_stream) {cmp} (?3, ?4)"));
                args.push((*at).into());
                args.push(name.clone().into());
            }
            format!("last_event_at {dir}, log_stream {dir}")
        }
    };
    sql.push_str(&format!(" ORDER BY {order} LIMIT {}", q.limit));
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(params_from_iter(args), |r| {
        Ok(LogStream {
            name: r.get(0)?,
            created_at: r.get(1)?,
            first_event_at: r.get(2)?,
            last_event_at: r.get(3)?,
            stored_bytes: to_u64(r.get(4)?),
        })
    })?;
    Ok(Some(rows.collect::<rusqlite::Result<_>>()?))
}

pub(crate) fn log_chunks(conn: &Connection, q: &ChunkQuery) -> Result<Option<Vec<LogChunk>>> {
    if !group_exists(conn, &q.group)? {
        return Ok(None);
    }
    let mut args: Vec<Value> = vec![q.group.clone().into()];
    let mut sql = String::from(
        "SELECT o.id, o.at, s.log_stream, o.data FROM output_chunks o
         JOIN output_streams s ON s.id = o.stream_id WHERE o.log_group = ?1",
    );
    // Each value is pushed, then named by its number in the condition.
    fn bind(args: &mut Vec<Value>, v: impl Into<Value>) -> usize {
        args.push(v.into());
        args.len()
    }
    if let Some(start) = q.start {
        let n = bind(&mut args, start);
        sql.push_str(&format!(" AND o.at >= ?{n}"));
    }
    if let Some(end) = q.end {
        let n = bind(&mut args, end);
        sql.push_str(&format!(" AND o.at < ?{n}"));
    }
    if let Some((at, id)) = q.from {
        let cmp = if q.backward { "<=" } else { ">=" };
        let a = bind(&mut args, at);
        let i = bind(&mut args, id);
        sql.push_str(&format!(" AND (o.at, o.id) {cmp} (?{a}, ?{i})"));
    }
    match &q.streams {
        StreamFilter::All => {}
        StreamFilter::Names(names) => {
            let list: Vec<String> = names
                .iter()
                .map(|name| format!("?{}", bind(&mut args, name.clone())))
                .collect();
            sql.push_str(&format!(" AND s.log_stream IN ({})", list.join(", ")));
        }
        StreamFilter::Prefix(prefix) => {
            let n = bind(&mut args, prefix.clone());
            sql.push_str(&format!(" AND {}", prefix_condition("s.log_stream", n)));
        }
    }
    let dir = if q.backward { "DESC" } else { "ASC" };
    sql.push_str(&format!(
        " ORDER BY o.at {dir}, o.id {dir} LIMIT {}",
        q.limit
    ));
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(params_from_iter(args), |r| {
        Ok(LogChunk {
            id: r.get(0)?,
            at: r.get(1)?,
            log_stream: r.get(2)?,
            data: r.get(3)?,
        })
    })?;
    Ok(Some(rows.collect::<rusqlite::Result<_>>()?))
}
