//! The node's identity and its state directory: loading `state_dir/identity.json`, or registering
//! with an activation (`POST /agent/v1/register`) and saving the answer (mode 0600). Also the small
//! helpers every module uses to create private directories and write files atomically.

use std::fmt;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use fleetrun_wire::agent::RegisterRequest;
use serde::{Deserialize, Serialize};

use crate::channel::ServerClient;
use crate::{AgentConfig, AgentError};

const IDENTITY_FILE: &str = "identity.json";

/// Who this node is to the server: its `mi-` id and its secret.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Identity {
    pub instance_id: String,
    pub node_secret: String,
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("instance_id", &self.instance_id)
            .field("node_secret", &"<redacted>")
            .finish()
    }
}

/// Loads `state_dir/identity.json`, or, when there is none, registers with `cfg.activation` and
/// saves the answer there (mode 0600). Fails when the file is unusable, when there is neither a
/// file nor an activation, or when registration fails (one attempt; the caller decides on retries).
pub async fn register_or_load(cfg: &AgentConfig) -> Result<Identity, AgentError> {
    let path = cfg.state_dir.join(IDENTITY_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => {
            let identity = parse_identity(&path, &bytes)?;
            tighten_permissions(&path);
            tracing::info!(instance_id = %identity.instance_id, "loaded node identity");
            return Ok(identity);
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(AgentError::io(format!("reading {}", path.display()), e)),
    }
    let Some(activation) = &cfg.activation else {
        return Err(AgentError::NotRegistered(cfg.state_dir.clone()));
    };
    ensure_private_dir(&cfg.state_dir)?;
    let client = ServerClient::new(&cfg.server_url, None)?;
    let url = cfg.server_url.clone();
    let machine = tokio::task::spawn_blocking(move || crate::machine_info(&url))
        .await
        .unwrap_or_default();
    let request = RegisterRequest {
        activation_id: activation.id.clone(),
        activation_code: activation.code.clone(),
        machine,
    };
    let answer = client.register(&request).await?;
    let identity = Identity {
        instance_id: answer.instance_id,
        node_secret: answer.node_secret,
    };
    if identity.instance_id.is_empty() || identity.node_secret.is_empty() {
        return Err(AgentError::Protocol {
            url: cfg.server_url.clone(),
            detail: "registration answer lacks instanceId or nodeSecret".into(),
        });
    }
    let json = serde_json::to_vec_pretty(&identity).map_err(|e| AgentError::BadIdentity {
        path: path.clone(),
        detail: e.to_string(),
    })?;
    write_private_file(&path, &json)?;
    tracing::info!(instance_id = %identity.instance_id, "registered with the server");
    Ok(identity)
}

fn parse_identity(path: &Path, bytes: &[u8]) -> Result<Identity, AgentError> {
    let bad = |detail: String| AgentError::BadIdentity {
        path: path.to_owned(),
        detail,
    };
    let identity: Identity = serde_json::from_slice(bytes).map_err(|e| bad(e.to_string()))?;
    if identity.instance_id.is_empty() || identity.node_secret.is_empty() {
        return Err(bad("instanceId or nodeSecret is empty".into()));
    }
    Ok(identity)
}

/// The identity holds a secret: make sure nobody else can read it, even if someone loosened it.
fn tighten_permissions(path: &Path) {
    if let Ok(meta) = std::fs::metadata(path) {
        if meta.permissions().mode() & 0o077 != 0 {
            tracing::warn!(path = %path.display(), "identity file was readable by others; setting mode 0600");
            let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
        }
    }
}

/// Creates `dir` (and its parents) with mode 0700 if missing.
pub(crate) fn ensure_private_dir(dir: &Path) -> Result<(), AgentError> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| AgentError::io(format!("creating {}", dir.display()), e))
}

/// Writes `bytes` to `path` atomically (temporary file, fsync, rename) with mode 0600.
pub(crate) fn write_private_file(path: &Path, bytes: &[u8]) -> Result<(), AgentError> {
    let tmp = tmp_path(path);
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        AgentError::io(format!("writing {}", path.display()), e)
    })
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_secret() {
        let id = Identity {
            instance_id: "mi-0123456789abcdef0".into(),
            node_secret: "s3cr3t".into(),
        };
        let text = format!("{id:?}");
        assert!(
            text.contains("mi-0123456789abcdef0") && !text.contains("s3cr3t"),
            "{text}"
        );
    }

    #[test]
    fn private_files_are_0600_and_bad_identities_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sub/identity.json");
        ensure_private_dir(path.parent().expect("parent")).expect("dir");
        write_private_file(&path, b"{\"instanceId\":\"\",\"nodeSecret\":\"x\"}").expect("write");
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let bytes = std::fs::read(&path).expect("read");
        assert!(matches!(
            parse_identity(&path, &bytes),
            Err(AgentError::BadIdentity { .. })
        ));
        assert!(matches!(
            parse_identity(&path, b"not json"),
            Err(AgentError::BadIdentity { .. })
        ));
    }
}
