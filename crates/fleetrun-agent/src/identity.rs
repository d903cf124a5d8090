//! The node's identity and its state directory: loading `state_dir/identity.json`, or registering
//! with an activation (`POST /agent/v2/register`: a fresh Ed25519 key pair, only the public key
//! sent) and saving the answer with the private key (mode 0600, directory 0700). An identity
//! written by a protocol v1 agent (`nodeSecret`) is recognised and refused with a clear error. Also
//! the small helpers every module uses to create private directories and write files atomically.

use std::fmt;
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use fleetrun_wire::agent::{RegisterRequest, KEY_TYPE_ED25519, PROTOCOL_VERSION};
use serde::{Deserialize, Serialize};

use crate::channel::ServerClient;
use crate::signing::NodeKey;
use crate::{Activation, AgentConfig, AgentError};

const IDENTITY_FILE: &str = "identity.json";
/// Environment variable an activation code may come from; removed once read.
pub const ACTIVATION_CODE_ENV: &str = "FLEETRUN_ACTIVATION_CODE";

/// Who this node is to the server: its `mi-` id, the region it signs for, and its private key.
#[derive(Clone, PartialEq, Eq)]
pub struct Identity {
    pub instance_id: String,
    /// The server's region, from registration: the region of every credential scope.
    pub region: String,
    pub key: NodeKey,
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("instance_id", &self.instance_id)
            .field("region", &self.region)
            .field("key", &self.key)
            .finish()
    }
}

/// `identity.json` as written: protocol 2 holds the private key; protocol 1 files hold
/// `nodeSecret` instead (and no `protocol`).
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct IdentityFile {
    #[serde(default)]
    protocol: u32,
    #[serde(default)]
    instance_id: String,
    #[serde(default)]
    region: String,
    #[serde(default)]
    key_type: String,
    #[serde(default)]
    private_key: String,
    #[serde(default, skip_serializing)]
    node_secret: Option<String>,
}

/// What `state_dir/identity.json` holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SavedIdentity {
    /// No file: the node has not registered.
    Missing,
    /// A file written by a protocol v1 agent: useless now, the node must register again.
    Legacy,
    Current(Box<Identity>),
}

/// Reads `state_dir/identity.json` (tightening its mode to 0600 if someone loosened it).
pub fn load_identity(state_dir: &Path) -> Result<SavedIdentity, AgentError> {
    let path = state_dir.join(IDENTITY_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => {
            let saved = parse_identity(&path, &bytes)?;
            tighten_permissions(&path);
            Ok(saved)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(SavedIdentity::Missing),
        Err(e) => Err(AgentError::io(format!("reading {}", path.display()), e)),
    }
}

/// Loads `state_dir/identity.json`, or, when there is none (or only a protocol v1 one), registers
/// with `cfg.activation` and saves the answer. Fails when the file is unusable, when there is no
/// usable file and no activation, or when registration fails (see [`register`]: it waits for an
/// unreachable server up to `cfg.register_timeout`).
pub async fn register_or_load(cfg: &AgentConfig) -> Result<Identity, AgentError> {
    let saved = load_identity(&cfg.state_dir)?;
    if let SavedIdentity::Current(identity) = saved {
        tracing::info!(instance_id = %identity.instance_id, "loaded node identity");
        return Ok(*identity);
    }
    match (&cfg.activation, saved) {
        (Some(activation), _) => register(cfg, activation, true).await,
        (None, SavedIdentity::Legacy) => Err(AgentError::LegacyIdentity(
            cfg.state_dir.join(IDENTITY_FILE),
        )),
        (None, _) => Err(AgentError::NotRegistered(cfg.state_dir.clone())),
    }
}

/// Registers this node with `activation`: generates a fresh Ed25519 key pair, sends the public
/// key, and saves the `mi-` id, the region and the private key to `state_dir/identity.json`
/// (0600). A usable saved identity is replaced only when `replace` is set (else
/// [`AgentError::AlreadyRegistered`]); a protocol v1 one always is.
///
/// While the server is unreachable or busy the attempt is repeated with backoff, for up to
/// `cfg.register_timeout` (default: until it succeeds; drop the future to stop waiting, e.g. on
/// Ctrl-C), then [`AgentError::RegistrationGaveUp`]. A refusal that cannot change (wrong code;
/// unknown, expired, deleted or used-up activation) is [`AgentError::RegistrationRefused`] at once.
pub async fn register(
    cfg: &AgentConfig,
    activation: &Activation,
    replace: bool,
) -> Result<Identity, AgentError> {
    let path = cfg.state_dir.join(IDENTITY_FILE);
    if !replace {
        if let SavedIdentity::Current(saved) = load_identity(&cfg.state_dir)? {
            return Err(AgentError::AlreadyRegistered {
                instance_id: saved.instance_id,
                path,
            });
        }
    }
    ensure_private_dir(&cfg.state_dir)?;
    let client = ServerClient::new(cfg, None)?;
    let url = cfg.server_url.clone();
    let machine = tokio::task::spawn_blocking(move || crate::machine_info(&url))
        .await
        .unwrap_or_default();
    let key = NodeKey::generate();
    let request = RegisterRequest {
        activation_id: activation.id.clone(),
        activation_code: activation.code.clone(),
        public_key: key.public_key_base64(),
        public_key_type: KEY_TYPE_ED25519.into(),
        machine,
    };
    let answer =
        crate::channel::register_patiently(&client, &request, cfg.register_timeout).await?;
    if answer.instance_id.is_empty() || answer.region.is_empty() {
        return Err(AgentError::Protocol {
            url: cfg.server_url.clone(),
            detail: "registration answer lacks instanceId or region".into(),
        });
    }
    let identity = Identity {
        instance_id: answer.instance_id,
        region: answer.region,
        key,
    };
    save_identity(&path, &identity)?;
    tracing::info!(instance_id = %identity.instance_id, "registered with the server");
    Ok(identity)
}

fn save_identity(path: &Path, identity: &Identity) -> Result<(), AgentError> {
    let file = IdentityFile {
        protocol: PROTOCOL_VERSION,
        instance_id: identity.instance_id.clone(),
        region: identity.region.clone(),
        key_type: KEY_TYPE_ED25519.into(),
        private_key: identity.key.to_base64(),
        node_secret: None,
    };
    let json = serde_json::to_vec_pretty(&file).map_err(|e| AgentError::BadIdentity {
        path: path.to_owned(),
        detail: e.to_string(),
    })?;
    write_private_file(path, &json)
}

fn parse_identity(path: &Path, bytes: &[u8]) -> Result<SavedIdentity, AgentError> {
    let bad = |detail: String| AgentError::BadIdentity {
        path: path.to_owned(),
        detail,
    };
    let file: IdentityFile = serde_json::from_slice(bytes).map_err(|e| bad(e.to_string()))?;
    if file.protocol < 2 && file.private_key.is_empty() && file.node_secret.is_some() {
        return Ok(SavedIdentity::Legacy);
    }
    if file.instance_id.is_empty() || file.region.is_empty() {
        return Err(bad("instanceId or region is empty".into()));
    }
    if file.key_type != KEY_TYPE_ED25519 {
        return Err(bad(format!("unsupported keyType {:?}", file.key_type)));
    }
    let key = NodeKey::from_base64(&file.private_key)
        .ok_or_else(|| bad("privateKey is not the base64 of a 32-byte Ed25519 key".into()))?;
    Ok(SavedIdentity::Current(Box::new(Identity {
        instance_id: file.instance_id,
        region: file.region,
        key,
    })))
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

/// The activation code for a registration, never from the command line: from `file` (`-` is
/// standard input; surrounding whitespace is trimmed), else from [`ACTIVATION_CODE_ENV`] (then
/// removed from this process's environment so the scripts it runs never see it). Call it before
/// any other thread starts: removing an environment variable races with threads reading it.
pub fn read_activation_code(file: Option<&Path>) -> Result<String, AgentError> {
    let code = match file {
        Some(path) if path == Path::new("-") => {
            let mut text = String::new();
            std::io::stdin().read_to_string(&mut text).map_err(|e| {
                AgentError::io("reading the activation code from standard input", e)
            })?;
            text
        }
        Some(path) => std::fs::read_to_string(path).map_err(|e| {
            AgentError::io(
                format!("reading the activation code from {}", path.display()),
                e,
            )
        })?,
        None => {
            let value = std::env::var(ACTIVATION_CODE_ENV).unwrap_or_default();
            std::env::remove_var(ACTIVATION_CODE_ENV);
            value
        }
    };
    let code = code.trim().to_owned();
    if code.is_empty() {
        return Err(AgentError::Config(format!(
            "no activation code: pass --activation-code-file FILE (or - for standard input), or set {ACTIVATION_CODE_ENV}"
        )));
    }
    Ok(code)
}

/// Creates `dir` (and its parents) with mode 0700 if missing, and takes group and other access
/// away from an existing `dir` (it holds the node's private key or its results).
pub(crate) fn ensure_private_dir(dir: &Path) -> Result<(), AgentError> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| AgentError::io(format!("creating {}", dir.display()), e))?;
    let meta = std::fs::metadata(dir)
        .map_err(|e| AgentError::io(format!("reading {}", dir.display()), e))?;
    if meta.permissions().mode() & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| AgentError::io(format!("making {} private", dir.display()), e))?;
    }
    Ok(())
}

/// Writes `bytes` to `path` atomically (temporary file, fsync, rename) with mode 0600.
pub(crate) fn write_private_file(path: &Path, bytes: &[u8]) -> Result<(), AgentError> {
    write_private(path, bytes, true)
}

/// The same without the fsync: atomic against a crash of the process, not of the machine. For
/// records that describe running processes, which a machine crash ends anyway (step_process).
pub(crate) fn write_private_record(path: &Path, bytes: &[u8]) -> Result<(), AgentError> {
    write_private(path, bytes, false)
}

fn write_private(path: &Path, bytes: &[u8], sync: bool) -> Result<(), AgentError> {
    let tmp = tmp_path(path);
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(bytes)?;
        if sync {
            f.sync_all()?;
        }
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

    fn sample() -> Identity {
        Identity {
            instance_id: "mi-0123456789abcdef0".into(),
            region: "us-east-1".into(),
            key: NodeKey::generate(),
        }
    }

    #[test]
    fn debug_hides_the_private_key() {
        let id = sample();
        let text = format!("{id:?}");
        assert!(
            text.contains("mi-0123456789abcdef0") && !text.contains(&id.key.to_base64()),
            "{text}"
        );
    }

    /// The private key lands in a 0600 file inside a 0700 directory and loads back unchanged.
    #[test]
    fn saved_identities_are_private_and_load_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = dir.path().join("state");
        ensure_private_dir(&state).expect("dir");
        let path = state.join(IDENTITY_FILE);
        let id = sample();
        save_identity(&path, &id).expect("save");
        let mode = |p: &Path| std::fs::metadata(p).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(&state), 0o700);
        let text = std::fs::read_to_string(&path).expect("read");
        assert!(text.contains(&id.key.to_base64()) && text.contains("\"keyType\": \"Ed25519\""));
        assert!(!text.contains("nodeSecret"));
        assert_eq!(
            load_identity(&state).expect("load"),
            SavedIdentity::Current(Box::new(id))
        );
        // A loosened file is tightened on load.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        load_identity(&state).expect("load");
        assert_eq!(mode(&path), 0o600);
    }

    #[test]
    fn legacy_missing_and_bad_identities_are_told_apart() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(
            load_identity(dir.path()).expect("load"),
            SavedIdentity::Missing
        );
        let path = dir.path().join(IDENTITY_FILE);
        let v1 = br#"{"instanceId":"mi-0123456789abcdef0","nodeSecret":"s3cr3t"}"#;
        assert_eq!(
            parse_identity(&path, v1).expect("parse"),
            SavedIdentity::Legacy
        );
        for bad in [
            &b"not json"[..],
            br#"{"protocol":2,"instanceId":"","region":"r","keyType":"Ed25519","privateKey":"x"}"#,
            br#"{"protocol":2,"instanceId":"mi-1","region":"r","keyType":"Rsa","privateKey":"x"}"#,
            br#"{"protocol":2,"instanceId":"mi-1","region":"r","keyType":"Ed25519","privateKey":"c2hvcnQ="}"#,
        ] {
            assert!(
                matches!(parse_identity(&path, bad), Err(AgentError::BadIdentity { .. })),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn activation_codes_come_from_a_file_trimmed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("code");
        std::fs::write(&file, "  abc123\n").expect("write");
        assert_eq!(read_activation_code(Some(&file)).expect("code"), "abc123");
        std::fs::write(&file, "\n").expect("write");
        assert!(matches!(
            read_activation_code(Some(&file)),
            Err(AgentError::Config(_))
        ));
        assert!(matches!(
            read_activation_code(Some(&dir.path().join("missing"))),
            Err(AgentError::Io { .. })
        ));
    }

    #[test]
    fn private_files_are_0600() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sub/file.json");
        ensure_private_dir(path.parent().expect("parent")).expect("dir");
        write_private_file(&path, b"{}").expect("write");
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
