//! Live output on PostgreSQL: the same rules and reads as `sqlite/output.rs`. A shipped piece
//! locks its stream's row (`FOR UPDATE`), so two servers taking resends of one stream at once
//! still add each byte once.

use deadpool_postgres::{GenericClient, Transaction};
use fleetrun_core::clock::Millis;
use fleetrun_core::command::Report;
use fleetrun_core::ids::{CommandId, InstanceId};
use fleetrun_core::live_output::{
    self, ChunkAck, ChunkQuery, CommandChunk, LogChunk, LogGroup, LogStream, NewChunk,
    OutputStream, Placement, StreamFilter, StreamKey, StreamOrder, StreamQuery,
};
use fleetrun_core::CoreError;
use tokio_postgres::types::ToSql;

use super::{col, execute, instance_id, query, query_opt, to_i64, Error, Result};

fn to_u64(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

const STREAM_SQL: &str = "SELECT id, committed FROM output_streams
     WHERE command_seq = $1 AND instance_id = $2 AND step = $3 AND stream = $4 FOR UPDATE";

const INSERT_STREAM_SQL: &str = "INSERT INTO output_streams (command_seq, instance_id, step,
         stream, log_group, log_stream, committed, created_at, first_event_at, last_event_at)
     VALUES ($1, $2, $3, $4, $5, $6, 0, $7, $7, $7)
     ON CONFLICT (command_seq, instance_id, step, stream) DO NOTHING";

/// The stream's row, created when missing, locked for this transaction: (id, committed bytes).
async fn lock_stream(
    tx: &Transaction<'_>,
    command_seq: i64,
    log_group: Option<&str>,
    key: &StreamKey,
    at: Millis,
) -> Result<(i64, u64, bool)> {
    let args: [&(dyn ToSql + Sync); 4] = [
        &command_seq,
        &key.instance_id.as_str(),
        &key.step,
        &key.stream.as_str(),
    ];
    if let Some(row) = query_opt(tx, STREAM_SQL, &args).await? {
        return Ok((col(&row, 0)?, to_u64(col(&row, 1)?), false));
    }
    execute(
        tx,
        INSERT_STREAM_SQL,
        &[
            &command_seq,
            &key.instance_id.as_str(),
            &key.step,
            &key.stream.as_str(),
            &log_group,
            &key.log_stream_name(),
            &at,
        ],
    )
    .await?;
    let row = query_opt(tx, STREAM_SQL, &args)
        .await?
        .ok_or_else(|| Error::Corrupt("output stream vanished".into()))?;
    Ok((col(&row, 0)?, to_u64(col(&row, 1)?), true))
}

async fn insert_chunk(
    tx: &Transaction<'_>,
    stream_id: i64,
    command_seq: i64,
    log_group: Option<&str>,
    at: Millis,
    offset: u64,
    data: &[u8],
) -> Result<()> {
    execute(
        tx,
        "INSERT INTO output_chunks (stream_id, command_seq, log_group, at, byte_offset, data)
         VALUES ($1, $2, $3, $4, $5, $6)",
        &[
            &stream_id,
            &command_seq,
            &log_group,
            &at,
            &i64::try_from(offset).unwrap_or(i64::MAX),
            &data,
        ],
    )
    .await?;
    execute(
        tx,
        "UPDATE output_streams SET committed = committed + $2, last_event_at = $3 WHERE id = $1",
        &[&stream_id, &to_i64(data.len()), &at],
    )
    .await?;
    Ok(())
}

pub(crate) async fn append(tx: &Transaction<'_>, chunk: &NewChunk) -> Result<ChunkAck> {
    let key = &chunk.key;
    let owner = query_opt(
        tx,
        "SELECT c.seq, c.log_group FROM invocations i JOIN commands c ON c.seq = i.command_seq
         WHERE i.command_id = $1 AND i.instance_id = $2",
        &[&key.command_id.as_str(), &key.instance_id.as_str()],
    )
    .await?;
    let Some(owner) = owner else {
        return Err(CoreError::NoSuchInvocation(
            key.command_id.to_string(),
            key.instance_id.to_string(),
        )
        .into());
    };
    let command_seq: i64 = col(&owner, 0)?;
    let log_group: Option<String> = col(&owner, 1)?;
    if chunk.data.is_empty() {
        // A probe: no row is created for it.
        let row = query_opt(
            tx,
            STREAM_SQL,
            &[
                &command_seq,
                &key.instance_id.as_str(),
                &key.step,
                &key.stream.as_str(),
            ],
        )
        .await?;
        let committed = match row {
            Some(r) => to_u64(col(&r, 1)?),
            None => 0,
        };
        return Ok(ChunkAck { committed });
    }
    let (stream_id, committed, _) =
        lock_stream(tx, command_seq, log_group.as_deref(), key, chunk.at).await?;
    let skip = match live_output::place(committed, chunk.offset, chunk.data.len()) {
        Placement::Append { skip } => skip,
        Placement::Held | Placement::Gap => return Ok(ChunkAck { committed }),
    };
    let data = &chunk.data[skip..];
    insert_chunk(
        tx,
        stream_id,
        command_seq,
        log_group.as_deref(),
        chunk.at,
        committed,
        data,
    )
    .await?;
    Ok(ChunkAck {
        committed: committed + data.len() as u64,
    })
}

/// Inside a finish: see `sqlite::output::store_report_output`.
pub(crate) async fn store_report_output(
    tx: &Transaction<'_>,
    command_seq: i64,
    log_group: &str,
    instance: &InstanceId,
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
        let (id, _, created) = lock_stream(tx, command_seq, Some(log_group), &key, at).await?;
        if created {
            insert_chunk(tx, id, command_seq, Some(log_group), at, 0, &data).await?;
        }
    }
    Ok(())
}

pub(crate) async fn command_chunks<C: GenericClient>(
    c: &C,
    command: &CommandId,
    instance: Option<&str>,
    after: i64,
    limit: usize,
) -> Result<Vec<CommandChunk>> {
    let rows = query(
        c,
        "SELECT o.id, s.instance_id, s.step, s.stream, o.byte_offset, o.data
         FROM commands c JOIN output_chunks o ON o.command_seq = c.seq
         JOIN output_streams s ON s.id = o.stream_id
         WHERE c.command_id = $1 AND o.id > $2 AND ($3::text IS NULL OR s.instance_id = $3)
         ORDER BY o.id LIMIT $4",
        &[&command.as_str(), &after, &instance, &to_i64(limit)],
    )
    .await?;
    rows.iter()
        .map(|r| {
            let stream: String = col(r, 3)?;
            Ok(CommandChunk {
                id: col(r, 0)?,
                instance_id: instance_id(col(r, 1)?)?,
                step: col(r, 2)?,
                stream: OutputStream::parse(&stream)
                    .ok_or_else(|| Error::Corrupt(format!("output stream {stream:?}")))?,
                offset: to_u64(col(r, 4)?),
                data: col(r, 5)?,
            })
        })
        .collect()
}

pub(crate) async fn log_groups<C: GenericClient>(
    c: &C,
    prefix: &str,
    after: Option<&str>,
    limit: usize,
) -> Result<Vec<LogGroup>> {
    let rows = query(
        c,
        "SELECT log_group, MIN(created_at), SUM(committed)::bigint FROM output_streams
         WHERE log_group IS NOT NULL AND starts_with(log_group, $1) AND log_group > $2
         GROUP BY log_group ORDER BY log_group LIMIT $3",
        &[&prefix, &after.unwrap_or(""), &to_i64(limit)],
    )
    .await?;
    rows.iter()
        .map(|r| {
            Ok(LogGroup {
                name: col(r, 0)?,
                created_at: col(r, 1)?,
                stored_bytes: to_u64(col(r, 2)?),
            })
        })
        .collect()
}

async fn group_exists<C: GenericClient>(c: &C, group: &str) -> Result<bool> {
    Ok(query_opt(
        c,
        "SELECT 1 FROM output_streams WHERE log_group = $1 LIMIT 1",
        &[&group],
    )
    .await?
    .is_some())
}

/// Parameters of a query built at run time, each named `$n` by its place.
#[derive(Default)]
struct Binds(Vec<Box<dyn ToSql + Sync + Send>>);

impl Binds {
    fn bind(&mut self, v: impl ToSql + Sync + Send + 'static) -> String {
        self.0.push(Box::new(v));
        format!("${}", self.0.len())
    }

    fn refs(&self) -> Vec<&(dyn ToSql + Sync)> {
        self.0
            .iter()
            .map(|b| b.as_ref() as &(dyn ToSql + Sync))
            .collect()
    }
}

pub(crate) async fn log_streams<C: GenericClient>(
    c: &C,
    q: &StreamQuery,
) -> Result<Option<Vec<LogStream>>> {
    if !group_exists(c, &q.group).await? {
        return Ok(None);
    }
    let (cmp, dir) = if q.descending {
        ("<", "DESC")
    } else {
        (">", "ASC")
    };
    let mut b = Binds::default();
    let mut sql = format!(
        "SELECT log_stream, created_at, first_event_at, last_event_at, committed FROM output_streams
         WHERE log_group = {} AND starts_with(log_stream, {})",
        b.bind(q.group.clone()),
        b.bind(q.prefix.clone())
    );
    let order = match q.order {
        StreamOrder::Name => {
            if let Some((_, name)) = &q.after {
                sql.push_str(&format!(" AND log_stream {cmp} {}", b.bind(name.clone())));
            }
            format!("log_stream {dir}")
        }
        StreamOrder::LastEventTime => {
            if let Some((at, name)) = &q.after {
                let (a, n) = (b.bind(*at), b.bind(name.clone()));
                sql.push_str(&format!(
                    " AND (last_event_at, log_stream) {cmp} ({a}, {n})"
                ));
            }
            format!("last_event_at {dir}, log_stream {dir}")
        }
    };
    sql.push_str(&format!(" ORDER BY {order} LIMIT {}", q.limit));
    let rows = query(c, &sql, &b.refs()).await?;
    rows.iter()
        .map(|r| {
            Ok(LogStream {
                name: col(r, 0)?,
                created_at: col(r, 1)?,
                first_event_at: col(r, 2)?,
                last_event_at: col(r, 3)?,
                stored_bytes: to_u64(col(r, 4)?),
            })
        })
        .collect::<Result<Vec<_>>>()
        .map(Some)
}

pub(crate) async fn log_chunks<C: GenericClient>(
    c: &C,
    q: &ChunkQuery,
) -> Result<Option<Vec<LogChunk>>> {
    if !group_exists(c, &q.group).await? {
        return Ok(None);
    }
    let mut b = Binds::default();
    let mut sql = format!(
        "SELECT o.id, o.at, s.log_stream, o.data FROM output_chunks o
         JOIN output_streams s ON s.id = o.stream_id WHERE o.log_group = {}",
        b.bind(q.group.clone())
    );
    if let Some(start) = q.start {
        sql.push_str(&format!(" AND o.at >= {}", b.bind(start)));
    }
    if let Some(end) = q.end {
        sql.push_str(&format!(" AND o.at < {}", b.bind(end)));
    }
    if let Some((at, id)) = q.from {
        let cmp = if q.backward { "<=" } else { ">=" };
        let (a, i) = (b.bind(at), b.bind(id));
        sql.push_str(&format!(" AND (o.at, o.id) {cmp} ({a}, {i})"));
    }
    match &q.streams {
        StreamFilter::All => {}
        StreamFilter::Names(names) => {
            sql.push_str(&format!(
                " AND s.log_stream = ANY({}::text[])",
                b.bind(names.clone())
            ));
        }
        StreamFilter::Prefix(prefix) => {
            sql.push_str(&format!(
                " AND starts_with(s.log_stream, {})",
                b.bind(prefix.clone())
            ));
        }
    }
    let dir = if q.backward { "DESC" } else { "ASC" };
    sql.push_str(&format!(
        " ORDER BY o.at {dir}, o.id {dir} LIMIT {}",
        q.limit
    ));
    let rows = query(c, &sql, &b.refs()).await?;
    rows.iter()
        .map(|r| {
            Ok(LogChunk {
                id: col(r, 0)?,
                at: col(r, 1)?,
                log_stream: col(r, 2)?,
                data: col(r, 3)?,
            })
        })
        .collect::<Result<Vec<_>>>()
        .map(Some)
}
