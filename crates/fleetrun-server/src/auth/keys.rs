//! Access keys as the verifier sees them: a short-lived in-memory cache over the store (a signed
//! request must not cost a database read), and the administrator key created on first start.
//!
//! The cache holds each key for [`CACHE_TTL`]; a change made through this server's admin API is
//! applied at once ([`KeyCache::forget`]), one made by another replica within the TTL.

use std::collections::HashMap;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use fleetrun_core::access::{
    generate_access_key_id, generate_secret_access_key, AccessKey, AccessKeyStatus,
};
use fleetrun_core::clock::now_millis;
use fleetrun_core::Store;
use fleetrun_policy::Policy;

use crate::error::ApiResult;

/// How long a looked-up key (or its absence) is trusted without asking the store again.
pub const CACHE_TTL: Duration = Duration::from_secs(5);
/// Most keys (known or unknown ids) the cache remembers; past that it starts afresh, so a flood of
/// made-up key ids cannot grow memory.
const CACHE_CAPACITY: usize = 10_000;
/// The file, in the data dir, holding the administrator key in AWS shared-credentials format.
pub const ADMIN_CREDENTIALS_FILE: &str = "admin-credentials";
/// The user name of the key created on first start.
pub const ADMIN_USER: &str = "admin";

/// An active key with its policies parsed once.
pub struct CachedKey {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub user_name: String,
    pub policies: Arc<[Policy]>,
}

struct Entry {
    key: Option<Arc<CachedKey>>,
    fetched: Instant,
}

/// Access keys by id, cached for [`CACHE_TTL`].
#[derive(Clone, Default)]
pub struct KeyCache {
    entries: Arc<Mutex<HashMap<String, Entry>>>,
}

impl KeyCache {
    /// The active key with this id, or `None` when it is unknown or inactive.
    pub async fn get(&self, store: &dyn Store, id: &str) -> ApiResult<Option<Arc<CachedKey>>> {
        {
            let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(entry) = entries.get(id) {
                if entry.fetched.elapsed() < CACHE_TTL {
                    return Ok(entry.key.clone());
                }
            }
        }
        let key = store
            .access_key(id)
            .await?
            .filter(|k| k.status == AccessKeyStatus::Active)
            .map(|k| Arc::new(cached(k)));
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if entries.len() >= CACHE_CAPACITY {
            entries.clear();
        }
        entries.insert(
            id.to_owned(),
            Entry {
                key: key.clone(),
                fetched: Instant::now(),
            },
        );
        Ok(key)
    }

    /// Drops what is known about `id` (after it was changed or deleted).
    pub fn forget(&self, id: &str) {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(id);
    }
}

fn cached(key: AccessKey) -> CachedKey {
    // Policies are validated when a key is created; a stored one that no longer parses (a newer
    // build's syntax, a hand edit) allows nothing rather than failing open.
    let policies: Vec<Policy> = match Policy::parse(&key.policy_json) {
        Ok(p) => vec![p],
        Err(e) => {
            tracing::warn!(access_key_id = %key.access_key_id, error = %e, "stored policy does not parse; the key is allowed nothing");
            Vec::new()
        }
    };
    CachedKey {
        access_key_id: key.access_key_id,
        secret_access_key: key.secret_access_key,
        user_name: key.user_name,
        policies: policies.into(),
    }
}

/// The administrator key as written to the data dir.
#[derive(Clone, PartialEq, Eq)]
pub struct AdminCredentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub path: PathBuf,
}

impl std::fmt::Debug for AdminCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminCredentials")
            .field("access_key_id", &self.access_key_id)
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// On a store without any access key, creates the administrator key (full access) and writes it to
/// `<data_dir>/admin-credentials` (mode 0600) as an AWS shared-credentials file. Returns the
/// administrator credentials when that file exists (created now or on an earlier start).
pub async fn bootstrap_admin_key(
    store: &dyn Store,
    data_dir: &Path,
) -> std::io::Result<Option<AdminCredentials>> {
    let path = data_dir.join(ADMIN_CREDENTIALS_FILE);
    let io = |e: fleetrun_core::CoreError| std::io::Error::other(e.to_string());
    if store.access_keys().await.map_err(io)?.is_empty() {
        let key = AccessKey {
            access_key_id: generate_access_key_id(),
            secret_access_key: generate_secret_access_key(),
            user_name: ADMIN_USER.into(),
            policy_json: Policy::full_access().to_json(),
            status: AccessKeyStatus::Active,
            created_at: now_millis(),
        };
        // The file first: a key nobody can read back would lock the operator out.
        write_credentials_file(&path, &key.access_key_id, &key.secret_access_key)?;
        if store.create_first_access_key(key).await.map_err(io)? {
            tracing::info!(path = %path.display(), "created the administrator access key");
        } else {
            // Another replica on the same empty store created the first key a moment earlier:
            // the key just written was never stored, and its file would name a key that does
            // not exist. That replica's data dir holds the administrator key.
            std::fs::remove_file(&path)?;
            tracing::info!(
                "another server created the administrator access key first; its data dir holds it"
            );
        }
    }
    read_credentials_file(&path)
}

/// Writes an AWS shared-credentials file (`[default]` profile) readable only by its owner.
pub fn write_credentials_file(path: &Path, id: &str, secret: &str) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    writeln!(
        f,
        "# fleetrun administrator key (full access). Use with AWS_SHARED_CREDENTIALS_FILE={}\n[default]\naws_access_key_id = {id}\naws_secret_access_key = {secret}",
        path.display()
    )?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// Reads the `[default]` key pair back from a file written by [`write_credentials_file`].
pub fn read_credentials_file(path: &Path) -> std::io::Result<Option<AdminCredentials>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let value = |name: &str| {
        text.lines()
            .filter_map(|l| l.split_once('='))
            .find(|(k, _)| k.trim() == name)
            .map(|(_, v)| v.trim().to_owned())
    };
    Ok(
        match (value("aws_access_key_id"), value("aws_secret_access_key")) {
            (Some(access_key_id), Some(secret_access_key)) => Some(AdminCredentials {
                access_key_id,
                secret_access_key,
                path: path.to_owned(),
            }),
            _ => None,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn of_two_servers_starting_at_once_on_an_empty_store_one_creates_the_administrator_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = fleetrun_store::SqliteStore::open(&dir.path().join("store.db")).expect("open");
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::create_dir_all(&a).expect("mkdir a");
        std::fs::create_dir_all(&b).expect("mkdir b");
        let (from_a, from_b) = tokio::join!(
            bootstrap_admin_key(&store, &a),
            bootstrap_admin_key(&store, &b)
        );
        let written: Vec<AdminCredentials> = [from_a, from_b]
            .into_iter()
            .filter_map(|r| r.expect("bootstrap"))
            .collect();
        assert_eq!(written.len(), 1, "exactly one data dir holds the key");
        let keys = store.access_keys().await.expect("keys");
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].access_key_id, written[0].access_key_id);
        assert_eq!(
            a.join(ADMIN_CREDENTIALS_FILE).exists() as u8
                + b.join(ADMIN_CREDENTIALS_FILE).exists() as u8,
            1
        );
    }

    #[test]
    fn credentials_file_round_trips_and_is_private() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(ADMIN_CREDENTIALS_FILE);
        write_credentials_file(&path, "AKIAEXAMPLE", "s3cr3t").expect("write");
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let read = read_credentials_file(&path).expect("read").expect("some");
        assert_eq!(read.access_key_id, "AKIAEXAMPLE");
        assert_eq!(read.secret_access_key, "s3cr3t");
        assert!(!format!("{read:?}").contains("s3cr3t"));
        assert_eq!(
            read_credentials_file(&dir.path().join("none")).expect("read"),
            None
        );
    }
}
