//! `fleetrun admin …`: manage API access keys through the server's `FleetrunAdmin.*` API, signed
//! with SigV4 like any AWS call. Credentials come from `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`
//! or, by default, from the administrator key file the server wrote to its data dir.

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use fleetrun_wire::admin::{
    CreateAccessKeyRequest, DeleteAccessKeyRequest, ListAccessKeysRequest, UpdateAccessKeyRequest,
    TARGET_PREFIX,
};
use serde::Serialize;

#[derive(Parser)]
pub struct AdminArgs {
    /// The fleetrun server to manage.
    #[arg(
        long,
        env = "FLEETRUN_ENDPOINT",
        default_value = "http://127.0.0.1:8089"
    )]
    endpoint: String,
    /// Data dir whose `admin-credentials` file signs the calls, unless AWS_ACCESS_KEY_ID and
    /// AWS_SECRET_ACCESS_KEY are set.
    #[arg(long, env = "FLEETRUN_DATA_DIR", default_value = "fleetrun-data")]
    data_dir: PathBuf,
    /// Region the server serves (part of every signature).
    #[arg(long, env = "FLEETRUN_REGION", default_value = "us-east-1")]
    region: String,
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

/// The key that signs the admin calls.
fn credentials(args: &AdminArgs) -> anyhow::Result<(String, String)> {
    if let (Ok(id), Ok(secret)) = (
        std::env::var("AWS_ACCESS_KEY_ID"),
        std::env::var("AWS_SECRET_ACCESS_KEY"),
    ) {
        return Ok((id, secret));
    }
    let creds = fleetrun_server::auth::read_admin_credentials(&args.data_dir)
        .with_context(|| format!("reading {}/admin-credentials", args.data_dir.display()))?
        .with_context(|| {
            format!(
                "no credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or point --data-dir at the server's data dir ({}/admin-credentials not found)",
                args.data_dir.display()
            )
        })?;
    Ok((creds.access_key_id, creds.secret_access_key))
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// POSTs one signed admin call and returns the answer's JSON.
async fn call<T: Serialize>(
    args: &AdminArgs,
    op: &str,
    body: &T,
) -> anyhow::Result<serde_json::Value> {
    let (id, secret) = credentials(args)?;
    let url = reqwest::Url::parse(&args.endpoint)
        .with_context(|| format!("endpoint {:?}", args.endpoint))?;
    let host = match (url.host_str(), url.port()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (Some(h), None) => h.to_owned(),
        _ => bail!("endpoint {:?} has no host", args.endpoint),
    };
    let payload = serde_json::to_vec(body)?;
    let target = format!("{TARGET_PREFIX}{op}");
    let content_type = "application/x-amz-json-1.1";
    let headers: Vec<(&str, &[u8])> = vec![
        ("content-type", content_type.as_bytes()),
        ("host", host.as_bytes()),
        ("x-amz-target", target.as_bytes()),
    ];
    let request = fleetrun_sigv4::HttpRequest {
        method: "POST",
        path: "/",
        query: "",
        headers: &headers,
        body: &payload,
    };
    let creds = fleetrun_sigv4::Credentials {
        access_key_id: &id,
        secret_access_key: &secret,
        session_token: None,
    };
    let signed = fleetrun_sigv4::sign(&request, &creds, &args.region, "ssm", unix_now());
    let mut req = reqwest::Client::new()
        .post(url)
        .header("content-type", content_type)
        .header("x-amz-target", &target)
        .body(payload);
    for (name, value) in signed {
        req = req.header(name, value);
    }
    let response = req.send().await.context("calling the server")?;
    let status = response.status();
    let text = response.text().await.context("reading the answer")?;
    let value: serde_json::Value = serde_json::from_str(&text).unwrap_or(serde_json::Value::Null);
    if !status.is_success() {
        let code = value["__type"].as_str().unwrap_or("error");
        let message = value["message"]
            .as_str()
            .or(value["Message"].as_str())
            .unwrap_or(&text);
        bail!("{op} failed: {code}: {message}");
    }
    Ok(value)
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
