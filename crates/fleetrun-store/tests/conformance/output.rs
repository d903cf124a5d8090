//! Checks for live output: shipped pieces are kept once each at their offsets whatever is resent;
//! the logs reads see exactly the streams of commands with a log group; a report's whole output
//! fills a stream nothing was shipped to; output goes with its command.

use super::support::*;

use fleetrun_core::command::CloudWatchOutput;
use fleetrun_core::ids::CommandId;
use fleetrun_core::live_output::{
    ChunkQuery, NewChunk, OutputStream, StreamFilter, StreamKey, StreamOrder, StreamQuery,
};
use fleetrun_core::status::ExecutionOutcome;
use fleetrun_core::{CoreError, Store};

const GROUP: &str = "/aws/ssm/AWS-RunShellScript";

fn key(id: &CommandId, n: u32, stream: OutputStream) -> StreamKey {
    StreamKey {
        command_id: id.clone(),
        instance_id: node(n),
        step: "aws:runShellScript".into(),
        stream,
    }
}

async fn ship(store: &dyn Store, key: &StreamKey, offset: u64, data: &str, at: i64) -> u64 {
    store
        .append_output(NewChunk {
            key: key.clone(),
            offset,
            data: data.as_bytes().to_vec(),
            at,
        })
        .await
        .expect("append")
        .committed
}

fn all_chunks(group: &str) -> ChunkQuery {
    ChunkQuery {
        group: group.into(),
        streams: StreamFilter::All,
        start: None,
        end: None,
        from: None,
        backward: false,
        limit: 100,
    }
}

pub async fn check_live_output(store: &dyn Store) {
    let mut logged = new_command(T0, "AWS-RunShellScript", &[node(1), node(2)]);
    logged.echo.cloudwatch = CloudWatchOutput {
        log_group_name: String::new(),
        enabled: true,
    };
    let logged = store.insert_command(logged).await.expect("insert").command;
    let plain = insert(store, T0 + 1, "AWS-RunShellScript", &[node(1)])
        .await
        .id;

    // Offsets: appends, resends and overlaps keep each byte once; a gap is refused.
    let out1 = key(&logged.id, 1, OutputStream::Stdout);
    assert_eq!(ship(store, &out1, 0, "", T0 + 5).await, 0, "a probe");
    assert_eq!(ship(store, &out1, 0, "one\ntwo\n", T0 + 10).await, 8);
    assert_eq!(
        ship(store, &out1, 0, "one\ntwo\n", T0 + 11).await,
        8,
        "resend"
    );
    assert_eq!(ship(store, &out1, 4, "two\nthree\n", T0 + 12).await, 14);
    assert_eq!(ship(store, &out1, 20, "gap\n", T0 + 13).await, 14, "gap");
    assert_eq!(ship(store, &out1, 14, "", T0 + 14).await, 14, "probe");
    let err1 = key(&logged.id, 1, OutputStream::Stderr);
    assert_eq!(ship(store, &err1, 0, "oops\n", T0 + 15).await, 5);
    let plain_out = key(&plain, 1, OutputStream::Stdout);
    assert_eq!(ship(store, &plain_out, 0, "quiet\n", T0 + 16).await, 6);
    let stranger = key(&logged.id, 9, OutputStream::Stdout);
    let refused = store
        .append_output(NewChunk {
            key: stranger,
            offset: 0,
            data: b"x".to_vec(),
            at: T0,
        })
        .await;
    assert!(
        matches!(refused, Err(CoreError::NoSuchInvocation(..))),
        "{refused:?}"
    );

    // A command's chunks, in order, from any id on; by node.
    let chunks = store
        .command_output(&logged.id, None, 0, 100)
        .await
        .expect("output");
    let texts: Vec<(u64, String)> = chunks
        .iter()
        .map(|c| (c.offset, String::from_utf8_lossy(&c.data).into_owned()))
        .collect();
    assert_eq!(
        texts,
        vec![
            (0, "one\ntwo\n".to_string()),
            (8, "three\n".to_string()),
            (0, "oops\n".to_string())
        ]
    );
    assert!(chunks.windows(2).all(|w| w[0].id < w[1].id));
    assert_eq!(chunks[2].stream, OutputStream::Stderr);
    let after = store
        .command_output(&logged.id, None, chunks[0].id, 100)
        .await
        .expect("after");
    assert_eq!(after.len(), 2);
    let other = store
        .command_output(&logged.id, Some(&node(2)), 0, 100)
        .await
        .expect("node 2");
    assert!(other.is_empty());

    // A report's whole output fills the streams nothing was shipped to, under the log group only.
    for n in [node(1), node(2)] {
        store.claim(&n, "s", &[], T0 + 20).await.expect("claim");
    }
    store
        .finish(
            &node(2),
            report(&logged.id, ExecutionOutcome::Failed, 1),
            T0 + 30,
        )
        .await
        .expect("finish 2");
    store
        .finish(
            &node(1),
            report(&logged.id, ExecutionOutcome::Success, 0),
            T0 + 31,
        )
        .await
        .expect("finish 1");
    let node2 = store
        .command_output(&logged.id, Some(&node(2)), 0, 100)
        .await
        .expect("node 2");
    let node2: Vec<(OutputStream, Vec<u8>)> =
        node2.into_iter().map(|c| (c.stream, c.data)).collect();
    assert_eq!(
        node2,
        vec![
            (OutputStream::Stdout, b"hello\n".to_vec()),
            (OutputStream::Stderr, b"boom\n".to_vec())
        ]
    );
    let node1 = store
        .command_output(&logged.id, Some(&node(1)), 0, 100)
        .await
        .expect("node 1");
    assert_eq!(
        node1.len(),
        3,
        "shipped streams are not filled from the report"
    );

    // The logs reads: one group, three streams, only the logged command's.
    let groups = store.log_groups("", None, 50).await.expect("groups");
    assert_eq!(groups.len(), 1);
    assert_eq!(groups[0].name, GROUP);
    assert_eq!(groups[0].stored_bytes, 14 + 5 + 6 + 5);
    assert!(store
        .log_groups("/nope", None, 50)
        .await
        .expect("groups")
        .is_empty());
    assert!(store
        .log_groups("", Some(GROUP), 50)
        .await
        .expect("after")
        .is_empty());
    let query = |prefix: &str, order, descending, after| StreamQuery {
        group: GROUP.into(),
        prefix: prefix.into(),
        order,
        descending,
        after,
        limit: 2,
    };
    let streams = store
        .log_streams(query("", StreamOrder::Name, false, None))
        .await
        .expect("streams")
        .expect("group exists");
    let names: Vec<String> = streams.iter().map(|s| s.name.clone()).collect();
    assert_eq!(
        names,
        [
            out1.log_stream_name().replace("stdout", "stderr"),
            out1.log_stream_name()
        ],
        "by name: stderr sorts first"
    );
    let rest = store
        .log_streams(query(
            "",
            StreamOrder::Name,
            false,
            Some((0, streams[1].name.clone())),
        ))
        .await
        .expect("streams")
        .expect("group");
    assert_eq!(rest.len(), 2, "node 2's two streams");
    let by_time = store
        .log_streams(query("", StreamOrder::LastEventTime, true, None))
        .await
        .expect("streams")
        .expect("group");
    assert!(by_time[0].last_event_at >= by_time[1].last_event_at);
    let prefixed = store
        .log_streams(query(
            &format!("{}/{}", logged.id, node(2)),
            StreamOrder::Name,
            false,
            None,
        ))
        .await
        .expect("streams")
        .expect("group");
    assert_eq!(prefixed.len(), 2);
    let mut missing = query("", StreamOrder::Name, false, None);
    missing.group = "/aws/ssm/Nope".into();
    assert_eq!(store.log_streams(missing).await.expect("streams"), None);

    let chunks = store
        .log_chunks(all_chunks(GROUP))
        .await
        .expect("chunks")
        .expect("group");
    assert_eq!(chunks.len(), 5);
    assert!(chunks
        .windows(2)
        .all(|w| (w[0].at, w[0].id) < (w[1].at, w[1].id)));
    let mut named = all_chunks(GROUP);
    named.streams = StreamFilter::Names(vec![out1.log_stream_name()]);
    named.start = Some(T0 + 11);
    let got = store
        .log_chunks(named.clone())
        .await
        .expect("chunks")
        .expect("group");
    assert_eq!(got.len(), 1, "startTime inclusive: the chunk at T0+12");
    let mut back = named;
    back.start = None;
    back.backward = true;
    back.from = Some((got[0].at, got[0].id));
    let got = store
        .log_chunks(back)
        .await
        .expect("chunks")
        .expect("group");
    assert_eq!(got.len(), 2, "going back includes the chunk it starts in");
    assert!(got[0].id > got[1].id);
    let mut prefix = all_chunks(GROUP);
    prefix.streams = StreamFilter::Prefix(format!("{}/{}", logged.id, node(2)));
    prefix.end = Some(T0 + 31);
    let got = store
        .log_chunks(prefix)
        .await
        .expect("chunks")
        .expect("group");
    assert_eq!(got.len(), 2);
    assert_eq!(
        store
            .log_chunks(all_chunks("/aws/ssm/Nope"))
            .await
            .expect("chunks"),
        None
    );

    // Output goes with its command.
    store.purge_before(T0 + 2).await.expect("purge");
    assert!(store
        .log_groups("", None, 50)
        .await
        .expect("groups")
        .is_empty());
    assert!(store
        .command_output(&plain, None, 0, 10)
        .await
        .expect("output")
        .is_empty());
}
