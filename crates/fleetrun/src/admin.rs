//! `fleetrun admin …`: manage API access keys through the server's `FleetrunAdmin.*` API, signed
//! with SigV4 like any AWS call (`api_client::Connection`).

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use fleetrun_wire::admin::{
    CreateAccessKeyRequest, DeleteAccessKeyRequest, ListAccessKeysRequest, UpdateAccessKeyRequest,
    TARGET_PREFIX,
};
use serde::Serialize;

use crate::api_client::Connection;

#[derive(Parser)]
pub struct AdminArgs {
    #[command(flatten)]
    connection: Connection,
    /// `json`: the answer as JSON. `text`: tab-separated values for scripts, as the aws CLI's
    /// `--output text` — create-key prints the key id and its secret, list-keys one line per key
    /// (id, user, status), the others nothing.
    #[arg(long, global = true, value_enum, default_value = "json")]
    output: Output,
    #[command(subcommand)]
    command: AdminCmd,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Output {
    Json,
    Text,
}

#[derive(Subcommand)]
enum AdminCmd {
    /// Create an access key for USER with a policy; prints the secret once.
    CreateKey {
        /// The IAM-style user name the key belongs to (named in AccessDenied messages).
        #[arg(long)]
        user: String,
        /// An IAM policy document (JSON file) — Allow/Deny, Action, Resource, Condition.
        #[arg(long, conflicts_with = "policy")]
        policy_file: Option<PathBuf>,
        /// A built-in policy: FullAccess or ReadOnly (AmazonSSMReadOnlyAccess).
        #[arg(long)]
        policy: Option<String>,
    },
    /// List access keys (ids, users, status, policies; never secrets).
    ListKeys,
    /// Stop a key from signing requests (it can be enabled again).
    DisableKey { access_key_id: String },
    /// Let a disabled key sign requests again.
    EnableKey { access_key_id: String },
    /// Delete a key for good.
    DeleteKey { access_key_id: String },
}

async fn call<T: Serialize>(
    args: &AdminArgs,
    op: &str,
    body: &T,
) -> anyhow::Result<serde_json::Value> {
    args.connection
        .call(&format!("{TARGET_PREFIX}{op}"), body)
        .await
        .with_context(|| format!("{op} failed"))
}

pub async fn run(args: AdminArgs) -> anyhow::Result<()> {
    let answer = match &args.command {
        AdminCmd::CreateKey {
            user,
            policy_file,
            policy,
        } => {
            let policy_document = match policy_file {
                Some(path) => Some(
                    std::fs::read_to_string(path)
                        .with_context(|| format!("reading {}", path.display()))?,
                ),
                None => None,
            };
            if policy_document.is_none() && policy.is_none() {
                bail!("give --policy-file FILE or --policy FullAccess|ReadOnly");
            }
            let body = CreateAccessKeyRequest {
                user_name: Some(user.clone()),
                policy_document,
                policy: policy.clone(),
            };
            call(&args, "CreateAccessKey", &body).await?
        }
        AdminCmd::ListKeys => call(&args, "ListAccessKeys", &ListAccessKeysRequest {}).await?,
        AdminCmd::DisableKey { access_key_id } | AdminCmd::EnableKey { access_key_id } => {
            let status = if matches!(args.command, AdminCmd::DisableKey { .. }) {
                "Inactive"
            } else {
                "Active"
            };
            let body = UpdateAccessKeyRequest {
                access_key_id: Some(access_key_id.clone()),
                status: Some(status.into()),
            };
            call(&args, "UpdateAccessKey", &body).await?
        }
        AdminCmd::DeleteKey { access_key_id } => {
            let body = DeleteAccessKeyRequest {
                access_key_id: Some(access_key_id.clone()),
            };
            call(&args, "DeleteAccessKey", &body).await?
        }
    };
    match args.output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&answer)?),
        Output::Text => print!("{}", as_text(&args.command, &answer)),
    }
    Ok(())
}

/// The `--output text` form of an answer (see [`AdminArgs::output`]).
fn as_text(command: &AdminCmd, answer: &serde_json::Value) -> String {
    let field = |v: &serde_json::Value, name: &str| v[name].as_str().unwrap_or_default().to_owned();
    match command {
        AdminCmd::CreateKey { .. } => {
            let key = &answer["AccessKey"];
            format!(
                "{}\t{}\n",
                field(key, "AccessKeyId"),
                field(key, "SecretAccessKey")
            )
        }
        AdminCmd::ListKeys => answer["AccessKeyMetadata"]
            .as_array()
            .map(|keys| {
                keys.iter()
                    .map(|k| {
                        format!(
                            "{}\t{}\t{}\n",
                            field(k, "AccessKeyId"),
                            field(k, "UserName"),
                            field(k, "Status")
                        )
                    })
                    .collect()
            })
            .unwrap_or_default(),
        AdminCmd::DisableKey { .. } | AdminCmd::EnableKey { .. } | AdminCmd::DeleteKey { .. } => {
            String::new()
        }
    }
}
