//! Throw-away databases for tests and benchmarks: [`TempDatabase`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use fleetrun_core::error::CoreResult;
use fleetrun_core::CoreError;

use super::describe;

/// How long creating or dropping a temporary database may take, connection included.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(30);

/// A fresh, empty database on a PostgreSQL server, dropped (with `WITH (FORCE)`, so connections
/// still open do not keep it) when this value is dropped — also when a test panics.
///
/// For tests and benchmarks: the store conformance suite runs each check in its own, and other
/// crates' tests may do the same. The admin URL needs the right to create databases; the
/// database is named `fleetrun_t_<pid>_<time>_<n>`, so leftovers of a killed run are easy to find
/// (`SELECT datname FROM pg_database WHERE datname LIKE 'fleetrun_t_%'`).
#[derive(Debug)]
pub struct TempDatabase {
    admin_url: String,
    name: String,
    url: String,
}

static NEXT: AtomicU64 = AtomicU64::new(0);

impl TempDatabase {
    /// Creates the database through `admin_url` (any database on the server the role may
    /// connect to, e.g. `postgres://postgres@127.0.0.1:5432/postgres`).
    pub async fn create(admin_url: &str) -> CoreResult<TempDatabase> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() % 1_000_000_000_000);
        let name = format!(
            "fleetrun_t_{}_{nanos}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let url = with_dbname(admin_url, &name)?;
        // The name is ours (digits and underscores): safe to splice into the statement.
        admin(admin_url, &format!("CREATE DATABASE {name}")).await?;
        Ok(TempDatabase {
            admin_url: admin_url.to_string(),
            name,
            url,
        })
    }

    /// A URL for the new database (the admin URL with its database name replaced).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for TempDatabase {
    /// Drop is synchronous and may run on an async runtime's thread (which must not block on
    /// another future), so the drop statement runs on a thread of its own with its own small
    /// runtime, and this waits for it.
    fn drop(&mut self) {
        let admin_url = self.admin_url.clone();
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        let dropped = std::thread::Builder::new()
            .name("drop-temp-db".into())
            .spawn(move || -> CoreResult<()> {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| CoreError::Store(format!("runtime: {e}")))?;
                rt.block_on(admin(&admin_url, &sql))
            })
            .map_err(|e| CoreError::Store(format!("thread: {e}")))
            .and_then(|t| {
                t.join()
                    .unwrap_or_else(|_| Err(CoreError::Store("the drop thread panicked".into())))
            });
        if let Err(e) = dropped {
            eprintln!("could not drop temporary database {}: {e}", self.name);
        }
    }
}

/// Runs one statement on its own connection to `admin_url`, within [`ADMIN_TIMEOUT`].
async fn admin(admin_url: &str, sql: &str) -> CoreResult<()> {
    let fail = |what: &str, e: &tokio_postgres::Error| {
        CoreError::Store(format!("postgres admin {what}: {}", describe(e)))
    };
    let run = async {
        let (client, driver) = super::tls::connect_one(admin_url)
            .await
            .map_err(|e| match e {
                CoreError::Store(text) => {
                    CoreError::Store(format!("postgres admin connect: {text}"))
                }
                other => other,
            })?;
        let done = client
            .batch_execute(sql)
            .await
            .map_err(|e| fail("statement", &e));
        drop(client);
        let _ = driver.await;
        done
    };
    tokio::time::timeout(ADMIN_TIMEOUT, run)
        .await
        .map_err(|_| {
            CoreError::Store(format!(
                "postgres admin: no answer within {ADMIN_TIMEOUT:?}"
            ))
        })?
}

/// `url` with its database name replaced by `name`: the path of a `postgres://` URL, or a
/// `dbname=` appended to a key=value string (the last setting wins).
fn with_dbname(url: &str, name: &str) -> CoreResult<String> {
    let Some(rest) = url
        .strip_prefix("postgres://")
        .or_else(|| url.strip_prefix("postgresql://"))
    else {
        return Ok(format!("{url} dbname={name}"));
    };
    let scheme = &url[..url.len() - rest.len()];
    let (before_query, query) = match rest.find('?') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let authority = before_query.split('/').next().unwrap_or_default();
    if authority.is_empty() {
        return Err(CoreError::Store(
            "postgres admin URL names no host".to_string(),
        ));
    }
    Ok(format!("{scheme}{authority}/{name}{query}"))
}

#[cfg(test)]
mod tests {
    use super::with_dbname;

    #[test]
    fn database_name_is_replaced() {
        let got = |u: &str| with_dbname(u, "t1").expect("url");
        assert_eq!(
            got("postgres://postgres@127.0.0.1:5432/postgres"),
            "postgres://postgres@127.0.0.1:5432/t1"
        );
        assert_eq!(got("postgresql://u:p@h"), "postgresql://u:p@h/t1");
        assert_eq!(
            got("postgres://u@h:1/db?sslmode=disable"),
            "postgres://u@h:1/t1?sslmode=disable"
        );
        assert_eq!(got("host=h user=u"), "host=h user=u dbname=t1");
    }
}
