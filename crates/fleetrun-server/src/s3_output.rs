//! Output to S3 (ARCHITECTURE.md, "S3 output"): the server uploads each finished invocation's
//! step output to the bucket its command names, from the store's upload queue, to any
//! S3-compatible store (`--s3-endpoint`), with the SDK's S3 client and credential chain.
//!
//! The server uploads, not the agent (amazon-ssm-agent uploads from the node): it already holds
//! every stream whole (shipped live, or carried by a short step's report), so nodes need no S3
//! credentials and no route to the bucket, and one queue in the store makes uploads survive any
//! process dying. An upload that fails is retried with backoff and logged; it never changes the
//! invocation's status (as on AWS).

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use aws_sdk_s3::error::SdkError;
use aws_sdk_s3::operation::head_bucket::HeadBucketError;
use aws_sdk_s3::primitives::ByteStream;
use fleetrun_core::clock::now_millis;
use fleetrun_core::command::Command;
use fleetrun_core::ids::{CommandId, InstanceId};
use fleetrun_core::live_output::OutputStream;
use fleetrun_core::s3_output::{aws_endpoint, object_url, OutputLocation, UploadJob};

use crate::error::{ApiError, ApiResult};
use crate::AppState;

/// How the server reaches S3 (`fleetrun server --s3-*`).
#[derive(Debug, Clone, Default)]
pub struct S3Settings {
    /// An S3-compatible endpoint (`http://127.0.0.1:9000`); `None`: AWS S3.
    pub endpoint: Option<String>,
    /// The S3 region; `None`: the server's region.
    pub region: Option<String>,
    /// Path-style requests (`<endpoint>/<bucket>/<key>`), as most self-hosted stores need.
    pub path_style: bool,
    /// The AWS profile whose credentials sign S3 requests; `None`: the default chain
    /// (`AWS_ACCESS_KEY_ID`…, `AWS_PROFILE`, the shared files, …).
    pub profile: Option<String>,
}

impl S3Settings {
    /// Where the URLs in the invocation records point: the configured endpoint, else AWS's.
    pub fn url_base(&self, server_region: &str) -> String {
        match &self.endpoint {
            Some(endpoint) => endpoint.clone(),
            None => aws_endpoint(self.region.as_deref().unwrap_or(server_region)),
        }
    }
}

/// A bucket known to exist is not asked about again for this long.
const BUCKET_CACHE: Duration = Duration::from_secs(60);
/// How long an upload is leased to this server: one that dies mid-upload delays it this long.
const LEASE_MS: i64 = 60_000;
/// Invocations uploaded per round.
const BATCH: usize = 16;
/// Longest wait between attempts.
const RETRY_MAX_MS: i64 = 300_000;
/// Chunks read per store call while gathering a stream.
const CHUNK_PAGE: usize = 64;

/// The S3 client, made on first use (loading the credential chain reads files and the
/// environment; a server whose commands never name a bucket never does it).
pub struct S3Output {
    client: aws_sdk_s3::Client,
    known_buckets: Mutex<HashMap<String, Instant>>,
}

impl S3Output {
    async fn connect(settings: &S3Settings, server_region: &str) -> Self {
        use aws_smithy_http_client::tls;
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(tls::Provider::Rustls(
                tls::rustls_provider::CryptoMode::Ring,
            ))
            .build_https();
        let region = settings
            .region
            .clone()
            .unwrap_or_else(|| server_region.to_owned());
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .http_client(http)
            .region(aws_config::Region::new(region));
        if let Some(profile) = &settings.profile {
            loader = loader.profile_name(profile);
        }
        let shared = loader.load().await;
        let mut conf = aws_sdk_s3::config::Builder::from(&shared)
            .force_path_style(settings.path_style)
            // Checksums only where S3 requires them: self-hosted stores vary in what they accept.
            .request_checksum_calculation(
                aws_sdk_s3::config::RequestChecksumCalculation::WhenRequired,
            );
        if let Some(endpoint) = &settings.endpoint {
            conf = conf.endpoint_url(endpoint);
        }
        Self {
            client: aws_sdk_s3::Client::from_conf(conf.build()),
            known_buckets: Mutex::new(HashMap::new()),
        }
    }

    /// `InvalidOutputFolder` when the bucket does not exist. Any other failure to ask (S3
    /// unreachable, no permission to HeadBucket) lets the command through: its uploads are
    /// retried, and AWS documents the error only for a missing bucket.
    async fn check_bucket(&self, bucket: &str) -> ApiResult<()> {
        {
            let known = self
                .known_buckets
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if known
                .get(bucket)
                .is_some_and(|at| at.elapsed() < BUCKET_CACHE)
            {
                return Ok(());
            }
        }
        match self.client.head_bucket().bucket(bucket).send().await {
            Ok(_) => {
                self.known_buckets
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .insert(bucket.to_owned(), Instant::now());
                Ok(())
            }
            Err(SdkError::ServiceError(e)) if matches!(e.err(), HeadBucketError::NotFound(_)) => {
                Err(ApiError::InvalidOutputFolder(bucket.to_owned()))
            }
            Err(e) => {
                tracing::warn!(%bucket, error = %describe(&e),
                    "cannot check that the output bucket exists; accepting the command");
                Ok(())
            }
        }
    }

    async fn put(&self, bucket: &str, key: &str, body: Vec<u8>) -> Result<(), String> {
        self.client
            .put_object()
            .bucket(bucket)
            .key(key)
            .content_type("text/plain")
            .body(ByteStream::from(body))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| describe(&e))
    }
}

/// An SDK error with its causes (its own Display says only "service error").
fn describe<E: std::error::Error>(e: &E) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        source = cause.source();
    }
    s
}

impl AppState {
    async fn s3(&self) -> &S3Output {
        self.s3
            .get_or_init(|| S3Output::connect(&self.config.s3, &self.config.region))
            .await
    }
}

/// SendCommand's check of `OutputS3BucketName`.
pub async fn check_bucket(st: &AppState, bucket: &str) -> ApiResult<()> {
    st.s3().await.check_bucket(bucket).await
}

/// The URLs of a step's two objects, path style under `base` (`S3Settings::url_base`); none
/// when the command names no bucket.
pub fn step_urls(
    base: &str,
    c: &Command,
    node: &InstanceId,
    action: &str,
    step: &str,
) -> Option<(String, String)> {
    let loc = OutputLocation::of(&c.echo.output_s3_bucket_name, &c.echo.output_s3_key_prefix)?;
    let url = |stream| {
        object_url(
            base,
            &loc.bucket,
            &loc.object_key(&c.id, node, action, step, stream),
        )
    };
    Some((url(OutputStream::Stdout), url(OutputStream::Stderr)))
}

/// Uploads queued output until the server stops: woken when a report arrives, else every second.
pub(crate) async fn upload(st: AppState) {
    loop {
        let now = now_millis();
        // An idle queue is only read: leasing takes the store's write path.
        let waiting = st.store.upload_backlog().await.unwrap_or(1);
        let jobs = match if waiting == 0 {
            Ok(Vec::new())
        } else {
            st.store.lease_uploads(now, LEASE_MS, BATCH).await
        } {
            Ok(jobs) => jobs,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the S3 upload queue");
                Vec::new()
            }
        };
        let full = jobs.len() == BATCH;
        for job in jobs {
            upload_one(&st, job).await;
        }
        if !full {
            tokio::select! {
                () = st.uploads.notified() => {}
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }
}

async fn upload_one(st: &AppState, job: UploadJob) {
    let result = upload_invocation(st, &job.command_id, &job.instance_id).await;
    let store = st.store.as_ref();
    let recorded = match result {
        Ok(objects) => {
            tracing::info!(command_id = %job.command_id, instance_id = %job.instance_id,
                objects, "output uploaded to S3");
            store.upload_done(&job.command_id, &job.instance_id).await
        }
        Err(why) => {
            let delay = 1_000i64
                .saturating_mul(1 << job.attempts.min(20))
                .min(RETRY_MAX_MS);
            tracing::warn!(command_id = %job.command_id, instance_id = %job.instance_id,
                attempt = job.attempts, retry_in_ms = delay, error = %why,
                "cannot upload output to S3; retrying");
            store
                .retry_upload_at(&job.command_id, &job.instance_id, now_millis() + delay)
                .await
        }
    };
    if let Err(e) = recorded {
        tracing::warn!(command_id = %job.command_id, error = %e,
            "cannot record an upload's outcome; its lease will run out and it is tried again");
    }
}

/// Uploads every non-empty stream of one invocation's steps; how many objects were stored.
async fn upload_invocation(
    st: &AppState,
    command_id: &CommandId,
    node: &InstanceId,
) -> Result<usize, String> {
    let store = st.store.as_ref();
    let Some(command) = store.command(command_id).await.map_err(|e| e.to_string())? else {
        return Ok(0); // purged meanwhile: nothing left to upload
    };
    let Some(loc) = OutputLocation::of(
        &command.echo.output_s3_bucket_name,
        &command.echo.output_s3_key_prefix,
    ) else {
        return Ok(0);
    };
    let Some(inv) = store
        .invocation(command_id, node)
        .await
        .map_err(|e| e.to_string())?
    else {
        return Ok(0);
    };
    let mut shipped = shipped_streams(st, command_id, node).await?;
    let s3 = st.s3().await;
    let mut stored = 0;
    for step in &inv.steps {
        let action = command
            .plan
            .steps
            .iter()
            .find(|p| p.name == step.name)
            .map_or(step.name.as_str(), |p| p.action.as_str());
        for (stream, reported) in [
            (OutputStream::Stdout, &step.stdout),
            (OutputStream::Stderr, &step.stderr),
        ] {
            // The shipped bytes when there are any, else the report's copy (whole for a short
            // step; for a stream whose shipping was refused, the beginning is all there is).
            let body = shipped
                .remove(&(step.name.clone(), stream))
                .unwrap_or_else(|| reported.as_bytes().to_vec());
            if body.is_empty() {
                continue; // empty streams are not uploaded (as by amazon-ssm-agent)
            }
            let key = loc.object_key(command_id, node, action, &step.name, stream);
            s3.put(&loc.bucket, &key, body)
                .await
                .map_err(|e| format!("s3://{}/{key}: {e}", loc.bucket))?;
            stored += 1;
        }
    }
    Ok(stored)
}

/// Every shipped stream of one invocation, whole, by (step, stream).
async fn shipped_streams(
    st: &AppState,
    command_id: &CommandId,
    node: &InstanceId,
) -> Result<BTreeMap<(String, OutputStream), Vec<u8>>, String> {
    let mut streams: BTreeMap<(String, OutputStream), Vec<u8>> = BTreeMap::new();
    let mut after = 0;
    loop {
        let page = st
            .store
            .command_output(command_id, Some(node), after, CHUNK_PAGE)
            .await
            .map_err(|e| e.to_string())?;
        let Some(last) = page.last() else {
            return Ok(streams);
        };
        after = last.id;
        let n = page.len();
        for chunk in page {
            streams
                .entry((chunk.step, chunk.stream))
                .or_default()
                .extend_from_slice(&chunk.data);
        }
        if n < CHUNK_PAGE {
            return Ok(streams);
        }
    }
}
