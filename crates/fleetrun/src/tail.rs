//! `fleetrun tail COMMAND_ID`: follows a command's output as its scripts print it, without any
//! AWS tooling. It reads the live output the agents ship (`FleetrunAdmin.GetCommandOutput`), then,
//! once the command is final, the output of steps too short to have been shipped (their reports
//! carry it: GetCommandInvocation). Script stdout goes to stdout, stderr to stderr; with several
//! nodes every line starts with `<instance-id>: `.

use std::collections::{BTreeSet, HashMap};
use std::io::Write;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use fleetrun_wire::admin::{GetCommandOutputRequest, GetCommandOutputResponse, TARGET_PREFIX};

use crate::api_client::Connection;

/// How long to wait before asking again when nothing new has arrived.
const POLL: Duration = Duration::from_millis(300);

#[derive(Parser)]
pub struct TailArgs {
    /// The command to follow (a CommandId from send-command).
    command_id: String,
    /// Only this node's output (and no `<instance-id>: ` prefix).
    #[arg(long)]
    instance_id: Option<String>,
    #[command(flatten)]
    connection: Connection,
}

/// Which stream of which step of which node.
type StreamId = (String, String, String);

/// Prints pieces line by line, each line prefixed when several nodes share the terminal.
struct Printer {
    prefixed: bool,
    /// The unfinished last line of each stream.
    partial: HashMap<StreamId, String>,
    seen: BTreeSet<StreamId>,
}

impl Printer {
    fn write(&mut self, id: StreamId, text: &str) -> std::io::Result<()> {
        self.seen.insert(id.clone());
        let pending = self.partial.entry(id.clone()).or_default();
        pending.push_str(text);
        let Some(cut) = pending.rfind('\n') else {
            return Ok(());
        };
        let lines: String = pending.drain(..=cut).collect();
        emit(&id, &lines, self.prefixed)
    }

    fn flush_partials(&mut self) -> std::io::Result<()> {
        for (id, rest) in std::mem::take(&mut self.partial) {
            if !rest.is_empty() {
                emit(&id, &format!("{rest}\n"), self.prefixed)?;
            }
        }
        Ok(())
    }
}

/// Writes complete lines of a stream to our stdout or stderr.
fn emit(id: &StreamId, lines: &str, prefixed: bool) -> std::io::Result<()> {
    let text = if prefixed {
        lines
            .lines()
            .map(|l| format!("{}: {l}\n", id.0))
            .collect::<String>()
    } else {
        lines.to_owned()
    };
    if id.2 == "stderr" {
        let mut err = std::io::stderr().lock();
        err.write_all(text.as_bytes())?;
        err.flush()
    } else {
        let mut out = std::io::stdout().lock();
        out.write_all(text.as_bytes())?;
        out.flush()
    }
}

fn is_final(status: &str) -> bool {
    !matches!(status, "Pending" | "InProgress" | "Cancelling" | "")
}

/// Follows the command to its end; true when it ended Success.
pub async fn run(args: TailArgs) -> anyhow::Result<bool> {
    let c = &args.connection;
    let listed = c
        .call(
            "AmazonSSM.ListCommands",
            &serde_json::json!({"CommandId": args.command_id}),
        )
        .await
        .context("looking the command up")?;
    let targets = listed["Commands"][0]["TargetCount"].as_u64().unwrap_or(0);
    let mut printer = Printer {
        prefixed: args.instance_id.is_none() && targets > 1,
        partial: HashMap::new(),
        seen: BTreeSet::new(),
    };
    let mut token = None;
    let status = loop {
        let answer = c
            .call(
                &format!("{TARGET_PREFIX}GetCommandOutput"),
                &GetCommandOutputRequest {
                    command_id: args.command_id.clone(),
                    instance_id: args.instance_id.clone(),
                    next_token: token.clone(),
                },
            )
            .await
            .context("reading the command's output")?;
        let page: GetCommandOutputResponse =
            serde_json::from_value(answer).context("decoding the output")?;
        let empty = page.output.is_empty();
        for piece in page.output {
            printer.write(
                (piece.instance_id, piece.step_name, piece.stream),
                &piece.content,
            )?;
        }
        token = Some(page.next_token);
        if empty {
            if is_final(&page.command_status) {
                break page.command_status;
            }
            tokio::time::sleep(POLL).await;
        }
    };
    printer.flush_partials()?;
    print_unshipped(c, &args, &mut printer).await?;
    Ok(status == "Success")
}

/// The output of steps that ended before anything of them was shipped: their reports carry it
/// whole (GetCommandInvocation's StandardOutputContent / StandardErrorContent).
async fn print_unshipped(
    c: &Connection,
    args: &TailArgs,
    printer: &mut Printer,
) -> anyhow::Result<()> {
    let mut next: Option<String> = None;
    loop {
        let mut req = serde_json::json!({"CommandId": args.command_id, "Details": true});
        if let Some(id) = &args.instance_id {
            req["InstanceId"] = id.clone().into();
        }
        if let Some(t) = &next {
            req["NextToken"] = t.clone().into();
        }
        let page = c
            .call("AmazonSSM.ListCommandInvocations", &req)
            .await
            .context("listing the command's invocations")?;
        for inv in page["CommandInvocations"].as_array().into_iter().flatten() {
            let instance = inv["InstanceId"].as_str().unwrap_or_default().to_owned();
            for plugin in inv["CommandPlugins"].as_array().into_iter().flatten() {
                let step = plugin["Name"].as_str().unwrap_or_default().to_owned();
                let streams = [
                    ("stdout", "StandardOutputContent"),
                    ("stderr", "StandardErrorContent"),
                ];
                if streams.iter().all(|(s, _)| {
                    printer
                        .seen
                        .contains(&(instance.clone(), step.clone(), (*s).to_owned()))
                }) {
                    continue;
                }
                let got = c
                    .call(
                        "AmazonSSM.GetCommandInvocation",
                        &serde_json::json!({"CommandId": args.command_id,
                            "InstanceId": instance, "PluginName": step}),
                    )
                    .await
                    .context("reading an invocation's output")?;
                for (stream, member) in streams {
                    let id = (instance.clone(), step.clone(), stream.to_owned());
                    let text = got[member].as_str().unwrap_or_default();
                    if !printer.seen.contains(&id) && !text.is_empty() {
                        printer.write(id, text)?;
                    }
                }
                printer.flush_partials()?;
            }
        }
        match page["NextToken"].as_str() {
            Some(t) if !t.is_empty() => next = Some(t.to_owned()),
            _ => return Ok(()),
        }
    }
}
