//! The comparison: moto's server (`moto_server`, from PyPI) started as a child process on
//! 127.0.0.1, seeded with the same N commands through its own SendCommand (the only way in; the
//! cost is measured), then asked the same ListCommands cases with the same `aws-sdk-ssm` client.
//!
//! moto keeps commands in a Python list and ignores MaxResults and Filters (it answers every command
//! in one page), so each of its answers carries all N commands; its iterations are few.

use std::path::Path;
use std::process::{Command as Process, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::list::{self, CaseInputs, CaseResult, Walk};
use crate::seed;
use crate::util::{free_port, sdk_client, wait_http, ChildGuard};

/// moto's figures for one N.
#[derive(Debug, Clone)]
pub struct Moto {
    pub commands: u64,
    pub seed_time: Duration,
    pub cases: Vec<CaseResult>,
    pub walk: Walk,
}

/// Starts `moto_server`, seeds `n` commands and runs the cases `iterations` times each.
pub async fn run(moto_server: &Path, n: u64, iterations: usize) -> anyhow::Result<Moto> {
    let port = free_port()?;
    let endpoint = format!("http://127.0.0.1:{port}");
    let child = Process::new(moto_server)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {}", moto_server.display()))?;
    let mut guard = ChildGuard(child);
    wait_http(
        &format!("{endpoint}/"),
        &mut guard.0,
        Duration::from_secs(60),
    )
    .await?;
    let client = sdk_client(&endpoint);

    let started = Instant::now();
    for i in 0..n {
        let (doc, targets) = seed::shape(i);
        client
            .send_command()
            .document_name(doc)
            .set_instance_ids(Some(targets.iter().map(ToString::to_string).collect()))
            .comment(format!("job {i}"))
            .parameters("commands", vec![format!("./run.sh --job {i}")])
            .send()
            .await
            .context("moto SendCommand (seeding)")?;
    }
    let seed_time = started.elapsed();

    let (command_id, instance_id) = list::probe(&client).await?;
    let middle = fleetrun_core::clock::iso8601(
        fleetrun_core::clock::now_millis() - i64::try_from(seed_time.as_millis() / 2)?,
    );
    let cases = list::cases(&CaseInputs {
        command_id,
        instance_id,
        middle,
    });
    let results = list::run_cases(
        &client,
        &cases,
        iterations,
        1,
        crate::stores::Backend::Sqlite,
    )
    .await?;
    let walk = list::walk(&client).await?;
    drop(guard);
    Ok(Moto {
        commands: n,
        seed_time,
        cases: results,
        walk,
    })
}
