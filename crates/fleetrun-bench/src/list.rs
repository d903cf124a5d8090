//! ListCommands latency over real HTTP with the real `aws-sdk-ssm` client: the query cases (first
//! page, MaxResults 50, one filter each), the timing loop, and the full pagination walk. The same
//! code measures fleetrun and moto, so the ratio compares like with like.

use std::time::{Duration, Instant};

use anyhow::Context;
use aws_sdk_ssm::types::{CommandFilter, CommandFilterKey};
use aws_sdk_ssm::Client;

use crate::util::Dist;

/// One ListCommands request shape (first page, MaxResults 50).
#[derive(Debug, Clone)]
pub struct Case {
    pub name: String,
    filter: Option<(CommandFilterKey, String)>,
    command_id: Option<String>,
    instance_id: Option<String>,
}

/// What the cases need from the seeded history.
pub struct CaseInputs {
    /// Some existing command id.
    pub command_id: String,
    /// Some node with history.
    pub instance_id: String,
    /// A time in the middle of the history (RFC 3339).
    pub middle: String,
}

/// The per-request floor: a well-formed node id that never ran anything, so the answer is empty and
/// the cost is the HTTP round trip, SigV4, validation and one index probe. It bounds any speed-up.
pub const FLOOR_CASE: &str = "floor: InstanceId without history";

/// The node id [`FLOOR_CASE`] asks for (outside every range the seeds use).
pub fn absent_instance_id() -> String {
    crate::seed::node(0x00ff_ffff_ffff).to_string()
}

fn filter(name: &str, key: CommandFilterKey, value: &str) -> Case {
    Case {
        name: name.into(),
        filter: Some((key, value.into())),
        command_id: None,
        instance_id: None,
    }
}

/// Every case the issue names: no filter, each filter key, CommandId and InstanceId.
pub fn cases(inputs: &CaseInputs) -> Vec<Case> {
    use CommandFilterKey as K;
    let mut out = vec![Case {
        name: "no filter".into(),
        filter: None,
        command_id: None,
        instance_id: None,
    }];
    out.push(filter(
        "InvokedAfter=middle",
        K::InvokedAfter,
        &inputs.middle,
    ));
    out.push(filter(
        "InvokedBefore=middle",
        K::InvokedBefore,
        &inputs.middle,
    ));
    for status in ["Success", "Failed", "TimedOut", "Cancelled", "InProgress"] {
        out.push(filter(&format!("Status={status}"), K::Status, status));
    }
    out.push(filter(
        "ExecutionStage=Executing",
        K::ExecutionStage,
        "Executing",
    ));
    out.push(filter(
        "ExecutionStage=Complete",
        K::ExecutionStage,
        "Complete",
    ));
    out.push(filter(
        "DocumentName=Patch-Baseline",
        K::DocumentName,
        "Patch-Baseline",
    ));
    out.push(Case {
        name: "CommandId".into(),
        filter: None,
        command_id: Some(inputs.command_id.clone()),
        instance_id: None,
    });
    out.push(Case {
        name: "InstanceId".into(),
        filter: None,
        command_id: None,
        instance_id: Some(inputs.instance_id.clone()),
    });
    out.push(Case {
        name: FLOOR_CASE.into(),
        filter: None,
        command_id: None,
        instance_id: Some(absent_instance_id()),
    });
    out
}

/// One timed case.
#[derive(Debug, Clone)]
pub struct CaseResult {
    pub name: String,
    pub dist: Dist,
    /// Commands in the (last) response.
    pub rows: usize,
    /// CPU time per request by side (client, server, store), over the timed requests.
    pub cpu: crate::cpu::CpuSplit,
}

async fn once(client: &Client, case: &Case) -> anyhow::Result<usize> {
    let mut req = client.list_commands().max_results(50);
    if let Some((key, value)) = &case.filter {
        req = req.filters(
            CommandFilter::builder()
                .key(key.clone())
                .value(value)
                .build()
                .context("building a filter")?,
        );
    }
    if let Some(id) = &case.command_id {
        req = req.command_id(id);
    }
    if let Some(id) = &case.instance_id {
        req = req.instance_id(id);
    }
    let out = req
        .send()
        .await
        .with_context(|| format!("ListCommands ({})", case.name))?;
    Ok(out.commands().len())
}

/// Times `iterations` sequential requests of each case, after a short warm-up.
pub async fn run_cases(
    client: &Client,
    cases: &[Case],
    iterations: usize,
    warmup: usize,
    backend: crate::stores::Backend,
) -> anyhow::Result<Vec<CaseResult>> {
    let mut out = Vec::with_capacity(cases.len());
    for case in cases {
        for _ in 0..warmup {
            once(client, case).await?;
        }
        let mut samples = Vec::with_capacity(iterations);
        let mut rows = 0;
        let cpu = crate::cpu::snapshot_with(backend == crate::stores::Backend::Postgres);
        for _ in 0..iterations {
            let t = Instant::now();
            rows = once(client, case).await?;
            samples.push(t.elapsed());
        }
        out.push(CaseResult {
            name: case.name.clone(),
            dist: Dist::new(samples),
            rows,
            cpu: cpu.elapsed().per(iterations),
        });
    }
    Ok(out)
}

/// A full pagination walk (no filter, MaxResults 50, following NextToken to the end).
#[derive(Debug, Clone)]
pub struct Walk {
    pub commands: usize,
    pub pages: usize,
    pub elapsed: Duration,
}

impl Walk {
    pub fn per_second(&self) -> f64 {
        self.commands as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

pub async fn walk(client: &Client) -> anyhow::Result<Walk> {
    let started = Instant::now();
    let (mut commands, mut pages) = (0, 0);
    let mut token: Option<String> = None;
    loop {
        let out = client
            .list_commands()
            .max_results(50)
            .set_next_token(token.take())
            .send()
            .await
            .context("ListCommands (pagination walk)")?;
        commands += out.commands().len();
        pages += 1;
        match out.next_token() {
            Some(t) if !t.is_empty() => token = Some(t.to_string()),
            _ => break,
        }
    }
    Ok(Walk {
        commands,
        pages,
        elapsed: started.elapsed(),
    })
}

/// The newest command's id and one node it ran on, as a client would find them.
pub async fn probe(client: &Client) -> anyhow::Result<(String, String)> {
    let out = client
        .list_commands()
        .max_results(1)
        .send()
        .await
        .context("ListCommands (probe)")?;
    let cmd = out.commands().first().context("the store is empty")?;
    let id = cmd.command_id().context("no CommandId")?.to_string();
    let node = cmd
        .instance_ids()
        .first()
        .context("no InstanceIds")?
        .to_string();
    Ok((id, node))
}
