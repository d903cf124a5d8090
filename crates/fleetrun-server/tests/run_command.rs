//! End to end with real agents running real scripts, driven by the real aws-sdk-ssm client.

mod common;

use std::time::Duration;

use common::{code, SentId, TestServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn success_reports_stdout_times_and_environment() {
    let s = TestServer::start().await;
    let a = s.add_agent().await;
    let id = s
        .run(
            &[&a.instance_id],
            &[
                "echo hello",
                "echo \"$AWS_SSM_INSTANCE_ID $AWS_SSM_REGION_NAME $SSM_COMMAND_ID\"",
            ],
        )
        .await;
    let out = s.wait(&id, &a.instance_id).await;
    assert_eq!(out.status().map(|s| s.as_str()), Some("Success"));
    assert_eq!(out.status_details(), Some("Success"));
    assert_eq!(out.response_code(), 0);
    assert_eq!(
        out.standard_output_content(),
        Some(format!("hello\n{} us-east-1 {}\n", a.instance_id, id).as_str())
    );
    assert_eq!(out.plugin_name(), Some("aws:runShellScript"));
    let start = out.execution_start_date_time().unwrap_or_default();
    assert!(start.ends_with('Z') && start.contains('T'), "{start}");
    assert!(out
        .execution_elapsed_time()
        .unwrap_or_default()
        .starts_with("PT"));

    let cmd = s
        .client
        .list_commands()
        .command_id(&id)
        .send()
        .await
        .expect("list");
    let c = &cmd.commands()[0];
    assert_eq!(c.status().map(|s| s.as_str()), Some("Success"));
    assert_eq!(
        (c.target_count(), c.completed_count(), c.error_count()),
        (1, 1, 0)
    );
    assert_eq!(c.max_concurrency(), Some("50"));
    assert_eq!(c.max_errors(), Some("0"));
    let requested = c.requested_date_time().expect("requested").as_secs_f64();
    let expires = c.expires_after().expect("expires").as_secs_f64();
    assert!(
        (expires - requested - 7200.0).abs() < 0.01,
        "{requested} {expires}"
    );
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failure_keeps_exit_code_and_stderr() {
    let s = TestServer::start().await;
    let a = s.add_agent().await;
    let id = s.run(&[&a.instance_id], &["echo oops >&2", "exit 3"]).await;
    let out = s.wait(&id, &a.instance_id).await;
    assert_eq!(out.status().map(|s| s.as_str()), Some("Failed"));
    assert_eq!(out.status_details(), Some("Failed"));
    assert_eq!(out.response_code(), 3);
    // amazon-ssm-agent appends Go's exec error to the stream.
    assert_eq!(
        out.standard_error_content(),
        Some("oops\nfailed to run commands: exit status 3")
    );
    let c = s
        .client
        .list_commands()
        .command_id(&id)
        .send()
        .await
        .expect("list");
    let c = &c.commands()[0];
    assert_eq!(c.status().map(|s| s.as_str()), Some("Failed"));
    assert_eq!(c.error_count(), 1);
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn execution_timeout_kills_the_script() {
    let s = TestServer::start().await;
    let a = s.add_agent().await;
    let started = std::time::Instant::now();
    let id = s
        .client
        .send_command()
        .document_name("AWS-RunShellScript")
        .instance_ids(&a.instance_id)
        .parameters("commands", vec!["sleep 60 & sleep 60".into()])
        .parameters("executionTimeout", vec!["5".into()])
        .send()
        .await
        .expect("send")
        .sent_id();
    let out = s.wait(&id, &a.instance_id).await;
    assert!(started.elapsed() < Duration::from_secs(30));
    assert_eq!(out.status().map(|s| s.as_str()), Some("TimedOut"));
    assert_eq!(out.status_details(), Some("ExecutionTimedOut"));
    assert_eq!(out.response_code(), 137);
    let c = s
        .client
        .list_commands()
        .command_id(&id)
        .send()
        .await
        .expect("list");
    assert_eq!(
        c.commands()[0].status().map(|s| s.as_str()),
        Some("TimedOut")
    );
    assert_eq!(c.commands()[0].status_details(), Some("ExecutionTimedOut"));
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_kills_a_running_script() {
    let s = TestServer::start().await;
    let a = s.add_agent().await;
    let marker = s.dir.path().join("cancel-marker");
    let script = format!("touch {}; sleep 60", marker.display());
    let id = s.run(&[&a.instance_id], &[&script]).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !marker.exists() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "script never started"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    s.client
        .cancel_command()
        .command_id(&id)
        .send()
        .await
        .expect("cancel");
    let out = s.wait(&id, &a.instance_id).await;
    assert_eq!(out.status().map(|s| s.as_str()), Some("Cancelled"));
    let c = s
        .client
        .list_commands()
        .command_id(&id)
        .send()
        .await
        .expect("list");
    assert_eq!(
        c.commands()[0].status().map(|s| s.as_str()),
        Some("Cancelled")
    );
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_stops_an_undelivered_command() {
    let s = TestServer::start().await;
    let node = s.stopped_node().await;
    let id = s.run(&[&node], &["echo never"]).await;
    s.client
        .cancel_command()
        .command_id(&id)
        .send()
        .await
        .expect("cancel");
    let out = s.wait(&id, &node).await;
    assert_eq!(out.status().map(|s| s.as_str()), Some("Cancelled"));
    assert_eq!(out.response_code(), -1);
    assert_eq!(out.standard_output_content(), Some(""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_output_is_truncated_as_aws_does() {
    let s = TestServer::start().await;
    let a = s.add_agent().await;
    let id = s
        .run(
            &[&a.instance_id],
            &[
                "head -c 30000 /dev/zero | tr '\\0' a",
                "head -c 9000 /dev/zero | tr '\\0' e >&2",
            ],
        )
        .await;
    let out = s.wait(&id, &a.instance_id).await;
    let stdout = out.standard_output_content().unwrap_or_default();
    assert_eq!(stdout.chars().count(), 24_000);
    assert!(stdout.ends_with("--output truncated--"));
    let stderr = out.standard_error_content().unwrap_or_default();
    assert_eq!(stderr.chars().count(), 8_000);
    let inv = s
        .client
        .list_command_invocations()
        .command_id(&id)
        .details(true)
        .send()
        .await
        .expect("list invocations");
    let plugin = &inv.command_invocations()[0].command_plugins()[0];
    let output = plugin.output().unwrap_or_default();
    assert!(output.chars().count() <= 2_500, "{}", output.len());
    assert!(output.contains("---Output truncated---"));
    assert_eq!(plugin.name(), Some("aws:runShellScript"));
    assert_eq!(plugin.response_code(), 0);
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn working_directory_is_honoured() {
    let s = TestServer::start().await;
    let a = s.add_agent().await;
    let wd = s.dir.path().join("wd");
    std::fs::create_dir_all(&wd).expect("wd");
    let wd = wd.canonicalize().expect("canonical");
    let id = s
        .client
        .send_command()
        .document_name("AWS-RunShellScript")
        .instance_ids(&a.instance_id)
        .parameters("commands", vec!["pwd".into()])
        .parameters("workingDirectory", vec![wd.display().to_string()])
        .send()
        .await
        .expect("send")
        .sent_id();
    let out = s.wait(&id, &a.instance_id).await;
    assert_eq!(
        out.standard_output_content(),
        Some(format!("{}\n", wd.display()).as_str())
    );
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fan_out_to_several_agents() {
    let s = TestServer::start().await;
    let mut agents = Vec::new();
    for _ in 0..4 {
        agents.push(s.add_agent().await);
    }
    let ids: Vec<&str> = agents.iter().map(|a| a.instance_id.as_str()).collect();
    let id = s.run(&ids, &["hostname >/dev/null; echo ok"]).await;
    for a in &agents {
        let out = s.wait(&id, &a.instance_id).await;
        assert_eq!(out.standard_output_content(), Some("ok\n"));
    }
    let inv = s
        .client
        .list_command_invocations()
        .command_id(&id)
        .send()
        .await
        .expect("list");
    assert_eq!(inv.command_invocations().len(), 4);
    assert!(inv
        .command_invocations()
        .iter()
        .all(|i| i.command_plugins().is_empty()));
    let c = s
        .client
        .list_commands()
        .command_id(&id)
        .send()
        .await
        .expect("list");
    assert_eq!(
        (
            c.commands()[0].target_count(),
            c.commands()[0].completed_count()
        ),
        (4, 4)
    );
    let info = s
        .client
        .describe_instance_information()
        .send()
        .await
        .expect("describe");
    let online = info
        .instance_information_list()
        .iter()
        .filter(|i| i.ping_status().map(|p| p.as_str()) == Some("Online"))
        .count();
    assert_eq!(online, 4);
    for a in agents {
        a.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_invocation_right_after_send_never_says_missing() {
    let s = TestServer::start().await;
    let a = s.add_agent().await;
    for _ in 0..5 {
        let id = s.run(&[&a.instance_id], &["true"]).await;
        let out = s
            .client
            .get_command_invocation()
            .command_id(&id)
            .instance_id(&a.instance_id)
            .send()
            .await;
        assert!(out.is_ok(), "{:?}", out.err().map(|e| code(&e)));
    }
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_restart_loses_nothing_and_agents_reconnect() {
    let s = TestServer::start().await;
    let a = s.add_agent().await;
    let node = a.instance_id.clone();
    let first = s.run(&[&node], &["echo before"]).await;
    s.wait(&first, &node).await;
    let addr = s.addr();
    let dir = s.stop().await;
    // The agent keeps retrying while the server is down; restart on the same address and data.
    let s = TestServer::start_in(dir, Some(addr)).await;
    let out = s.wait(&first, &node).await;
    assert_eq!(out.standard_output_content(), Some("before\n"));
    let second = s.run(&[&node], &["echo after"]).await;
    let out = s.wait(&second, &node).await;
    assert_eq!(out.standard_output_content(), Some("after\n"));
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_restart_reuses_its_identity() {
    let s = TestServer::start().await;
    let a = s.add_agent().await;
    let (node, dir) = (a.instance_id.clone(), a.state_dir.clone());
    a.stop().await;
    let b = s.start_agent(dir, None).await;
    assert_eq!(b.instance_id, node);
    let id = s.run(&[&node], &["echo again"]).await;
    assert_eq!(
        s.wait(&id, &node).await.standard_output_content(),
        Some("again\n")
    );
    b.stop().await;
}

/// A command stored before listings were pre-rendered (schema v3 and earlier: no `rendered`) lists
/// exactly as it did when it was sent, beside one that has its rendering.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_stored_without_a_rendering_list_the_same() {
    if common::on_postgres() {
        // Such rows exist only in SQLite data dirs (PostgreSQL stores began with renderings).
        eprintln!(
            "SKIPPED commands_stored_without_a_rendering_list_the_same: SQLite data dirs only"
        );
        return;
    }
    let s = TestServer::start().await;
    let a = s.add_agent().await;
    let node = a.instance_id.clone();
    let done = s.run(&[&node], &["echo listed"]).await;
    s.wait(&done, &node).await;
    a.stop().await;
    // A node that never polls: its work stays Pending across the restart (a stopped agent's
    // goodbye would turn it Delayed on the next tick).
    let idle = s.register_node("Linux").await;
    s.client
        .send_command()
        .document_name("AWS-RunShellScript")
        .instance_ids(&idle)
        .comment("waits \"undelivered\" ✓")
        .timeout_seconds(120)
        .max_concurrency("3")
        .max_errors("10%")
        .output_s3_bucket_name("bucket")
        .parameters("commands", vec!["echo a".into(), "echo b".into()])
        .send()
        .await
        .expect("send");
    let list = |s: &TestServer| {
        let client = s.client.clone();
        async move {
            client
                .list_commands()
                .send()
                .await
                .expect("list")
                .commands()
                .to_vec()
        }
    };
    let before = list(&s).await;
    assert_eq!(before.len(), 2);
    let dir = s.stop().await;

    let db = rusqlite::Connection::open(dir.path().join("data").join("fleetrun.db")).expect("open");
    let cleared = db
        .execute(
            "UPDATE commands SET rendered = NULL WHERE command_id = ?1",
            [&done],
        )
        .expect("clear the rendering");
    assert_eq!(cleared, 1);
    drop(db);

    let s = TestServer::start_in(dir, None).await;
    assert_eq!(list(&s).await, before);
    s.stop().await;
}
