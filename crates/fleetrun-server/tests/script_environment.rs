//! A script printing its environment through a real server and an in-process agent (as with
//! `fleetrun server --local-node`, where the agent shares the server's environment). Alone in
//! this test binary: it sets variables in the process environment before any thread starts.

mod common;

use common::TestServer;

#[test]
fn a_script_sees_the_ssm_variables_and_none_of_the_agents_or_servers() {
    // Edition 2021: `set_var` is safe; no other thread exists yet.
    std::env::set_var("FLEETRUN_ACTIVATION_CODE", "leaked-activation-code");
    std::env::set_var("FLEETRUN_DATA_DIR", "/leaked/data");
    std::env::set_var("AWS_SECRET_ACCESS_KEY", "leaked-secret-key");
    std::env::set_var("AWS_ACCESS_KEY_ID", "AKIALEAKED");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let s = TestServer::start().await;
        let a = s.add_agent().await;
        let id = s.run(&[&a.instance_id], &["env"]).await;
        let out = s.wait(&id, &a.instance_id).await;
        assert_eq!(out.status().map(|s| s.as_str()), Some("Success"));
        let printed = out.standard_output_content().unwrap_or_default();
        assert!(
            !printed.contains("leaked") && !printed.contains("LEAKED"),
            "{printed}"
        );
        let lines: Vec<&str> = printed.lines().collect();
        assert!(
            !lines.iter().any(|l| l.starts_with("FLEETRUN_")),
            "{printed}"
        );
        assert!(
            !lines.iter().any(|l| l.starts_with("AWS_SECRET")),
            "{printed}"
        );
        for expected in [
            format!("AWS_SSM_INSTANCE_ID={}", a.instance_id),
            "AWS_SSM_REGION_NAME=us-east-1".to_owned(),
            format!("SSM_COMMAND_ID={id}"),
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_owned(),
            "SHELL=/bin/sh".to_owned(),
        ] {
            assert!(
                lines.contains(&expected.as_str()),
                "{expected} missing in\n{printed}"
            );
        }
        a.stop().await;
        s.stop().await;
    });
}
