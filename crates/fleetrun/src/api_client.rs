//! Signed calls to a fleetrun server from the command line (`fleetrun admin`, `fleetrun tail`):
//! awsJson1_1 with SigV4, as any AWS client. Credentials come from `AWS_ACCESS_KEY_ID` /
//! `AWS_SECRET_ACCESS_KEY` or, by default, from the administrator key file the server wrote to its
//! data dir.

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Args;
use serde::Serialize;

/// Where the server is and what signs the calls.
#[derive(Args, Clone)]
pub struct Connection {
    /// The fleetrun server.
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
}

/// The key that signs the calls.
fn credentials(c: &Connection) -> anyhow::Result<(String, String)> {
    if let (Ok(id), Ok(secret)) = (
        std::env::var("AWS_ACCESS_KEY_ID"),
        std::env::var("AWS_SECRET_ACCESS_KEY"),
    ) {
        return Ok((id, secret));
    }
    let creds = fleetrun_server::auth::read_admin_credentials(&c.data_dir)
        .with_context(|| format!("reading {}/admin-credentials", c.data_dir.display()))?
        .with_context(|| {
            format!(
                "no credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or point --data-dir at the server's data dir ({}/admin-credentials not found)",
                c.data_dir.display()
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

impl Connection {
    /// POSTs one signed call (`target` is the whole X-Amz-Target) and returns the answer's JSON;
    /// an error answer is an error carrying its code and message.
    pub async fn call<T: Serialize>(
        &self,
        target: &str,
        body: &T,
    ) -> anyhow::Result<serde_json::Value> {
        let (id, secret) = credentials(self)?;
        let url = reqwest::Url::parse(&self.endpoint)
            .with_context(|| format!("endpoint {:?}", self.endpoint))?;
        let host = match (url.host_str(), url.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_owned(),
            _ => bail!("endpoint {:?} has no host", self.endpoint),
        };
        let payload = serde_json::to_vec(body)?;
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
        let signed = fleetrun_sigv4::sign(&request, &creds, &self.region, "ssm", unix_now());
        let mut req = reqwest::Client::new()
            .post(url)
            .header("content-type", content_type)
            .header("x-amz-target", target)
            .body(payload);
        for (name, value) in signed {
            req = req.header(name, value);
        }
        let response = req.send().await.context("calling the server")?;
        let status = response.status();
        let text = response.text().await.context("reading the answer")?;
        let value: serde_json::Value =
            serde_json::from_str(&text).unwrap_or(serde_json::Value::Null);
        if !status.is_success() {
            let code = value["__type"].as_str().unwrap_or("error");
            let message = value["message"]
                .as_str()
                .or(value["Message"].as_str())
                .unwrap_or(&text);
            bail!("{code}: {message}");
        }
        Ok(value)
    }
}
