//! 1,100 silent connections against a server whose process may open only 1,024 files
//! (systemd's default soft limit): ordinary API and agent calls still get through, because at
//! the connection cap the oldest idle connection is closed to make room.
//!
//! The server runs in a child process (this test binary, run again with `CHILD_ENV` set) so the
//! limit binds it alone; the parent holds the 1,100 sockets.

use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use super::common::TestServer;

const CHILD_ENV: &str = "FLEETRUN_TEST_FILE_LIMIT_CHILD";
const CHILD_TEST: &str = "files::child_server_under_a_1024_file_limit";
const SILENT: usize = 1_100;

/// The child's half of the test below; returns at once unless `CHILD_ENV` is set. It applies a
/// 1,024 open-file limit (soft and hard) to its own process, serves, waits for "GO" on stdin,
/// makes ordinary calls and prints what they took.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child_server_under_a_1024_file_limit() {
    if std::env::var_os(CHILD_ENV).is_none() {
        return;
    }
    use nix::sys::resource::{setrlimit, Resource};
    setrlimit(Resource::RLIMIT_NOFILE, 1024, 1024).expect("setrlimit");
    // Timeouts far beyond the test, so only the connection cap can make room.
    let server = TestServer::start_with(|c| {
        c.limits.header_timeout = Duration::from_secs(300);
        c.limits.idle_timeout = Duration::from_secs(300);
    })
    .await;
    println!("ENDPOINT {}", server.endpoint);
    let mut stdin = BufReader::new(tokio::io::stdin()).lines();
    let _ = stdin.next_line().await;

    let mut ok = true;
    let mut list_ms = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let r = tokio::time::timeout(
            Duration::from_secs(20),
            server.client.list_commands().send(),
        )
        .await;
        ok &= matches!(r, Ok(Ok(_)));
        list_ms.push(t.elapsed().as_millis());
    }
    let t = Instant::now();
    let r = tokio::time::timeout(
        Duration::from_secs(20),
        server.client.describe_instance_information().send(),
    )
    .await;
    ok &= matches!(r, Ok(Ok(_)));
    let describe_ms = t.elapsed().as_millis();
    // An agent call (unauthenticated, so refused): any answer means agents are not locked out.
    let t = Instant::now();
    let addr = server.addr();
    let poll = super::raw::request(
        "POST",
        fleetrun_wire::agent::POLL_PATH.as_bytes(),
        &[],
        b"{}",
    );
    let agent = super::raw::exchange(addr, &poll, Duration::from_secs(20))
        .await
        .map_or(0, |a| a.status);
    let agent_ms = t.elapsed().as_millis();
    let fds = std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count())
        .unwrap_or(0);
    println!(
        "RESULT ok={ok} list_ms={} describe_ms={describe_ms} agent_status={agent} agent_ms={agent_ms} fds={fds}",
        list_ms.iter().map(|m| m.to_string()).collect::<Vec<_>>().join(",")
    );
    let _ = stdin.next_line().await;
    server.stop().await;
}

/// The rest of the child's next stdout line starting with `prefix`.
async fn wait_for(
    lines: &mut tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    prefix: &str,
) -> Option<String> {
    let found = tokio::time::timeout(Duration::from_secs(120), async {
        while let Ok(Some(l)) = lines.next_line().await {
            // The test harness may print its own text first on the same line.
            if let Some(at) = l.find(prefix) {
                return Some(l[at + prefix.len()..].to_string());
            }
        }
        None
    });
    found.await.ok().flatten()
}

fn field<'a>(line: &'a str, name: &str) -> &'a str {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(name)?.strip_prefix('='))
        .unwrap_or("")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_beyond_a_1024_file_limit_do_not_lock_out_clients() {
    let have = fleetrun_server::limits::raise_open_file_limit();
    assert!(
        have >= SILENT + 300,
        "this test holds {SILENT} sockets itself and needs an open-file limit of {} (have {have} after raising the soft limit to the hard one)",
        SILENT + 300
    );
    let exe = std::env::current_exe().expect("test binary");
    let mut child = tokio::process::Command::new(exe)
        .args([CHILD_TEST, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, "1")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start the child server");
    let mut stdin = child.stdin.take().expect("stdin");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let endpoint = wait_for(&mut lines, "ENDPOINT ")
        .await
        .expect("the child serves");
    let addr: std::net::SocketAddr = endpoint
        .trim_start_matches("http://")
        .parse()
        .expect("addr");

    let started = Instant::now();
    let mut silent = Vec::with_capacity(SILENT);
    while silent.len() < SILENT {
        let batch: Vec<_> = (0..100.min(SILENT - silent.len()))
            .map(|_| {
                tokio::spawn(tokio::time::timeout(
                    Duration::from_secs(15),
                    TcpStream::connect(addr),
                ))
            })
            .collect();
        for b in batch {
            let s = b
                .await
                .expect("join")
                .expect("connect in time")
                .expect("connect");
            silent.push(s);
        }
    }
    let opened = started.elapsed();

    stdin.write_all(b"GO\n").await.expect("signal the child");
    let result = wait_for(&mut lines, "RESULT ")
        .await
        .expect("the child reports");
    println!(
        "{SILENT} silent connections opened in {:.1} s; child: {result}",
        opened.as_secs_f64()
    );
    let list_ms: Vec<u128> = field(&result, "list_ms")
        .split(',')
        .filter_map(|v| v.trim().parse().ok())
        .collect();
    assert_eq!(
        field(&result, "ok"),
        "true",
        "every ordinary call succeeded: {result}"
    );
    assert_eq!(list_ms.len(), 5);
    assert!(
        list_ms.iter().all(|&ms| ms < 5_000),
        "ListCommands within a few seconds: {list_ms:?}"
    );
    let agent: u16 = field(&result, "agent_status").parse().unwrap_or(0);
    assert!(
        (400..500).contains(&agent),
        "the agent endpoint answered ({agent})"
    );
    let fds: usize = field(&result, "fds").parse().unwrap_or(usize::MAX);
    assert!(
        fds <= 1024,
        "the child stayed within its limit ({fds} files open)"
    );

    // The server made room by closing the oldest of ours: at least those beyond its limit.
    let mut probe = [0u8; 1];
    let shed = silent
        .iter()
        .filter(|s| match s.try_read(&mut probe) {
            Ok(n) => n == 0,
            Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
        })
        .count();
    println!("the server closed {shed} of the {SILENT} silent connections");
    assert!(shed >= SILENT - 1024, "connections were shed ({shed})");

    drop(stdin);
    let _ = tokio::time::timeout(Duration::from_secs(30), child.wait()).await;
}
