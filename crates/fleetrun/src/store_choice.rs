//! `--store`: where the server keeps its state. SQLite in the data dir needs nothing and serves
//! one server; a PostgreSQL URL lets several servers share one database (ARCHITECTURE.md,
//! "Several servers on one database").

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use fleetrun_core::store::WakeBus;
use fleetrun_core::Store;
use fleetrun_store::{PostgresStore, SqliteStore};

/// The parsed `--store` value. Its `Debug` never shows a URL (it may carry a password).
#[derive(Clone)]
pub enum StoreChoice {
    /// `<data-dir>/fleetrun.db`.
    Sqlite,
    /// A `postgres://` or `postgresql://` URL.
    Postgres(String),
}

impl std::fmt::Debug for StoreChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreChoice::Sqlite => f.write_str("sqlite"),
            StoreChoice::Postgres(_) => f.write_str("postgres"),
        }
    }
}

impl std::str::FromStr for StoreChoice {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "sqlite" {
            return Ok(StoreChoice::Sqlite);
        }
        if s.starts_with("postgres://") || s.starts_with("postgresql://") {
            return Ok(StoreChoice::Postgres(s.to_owned()));
        }
        // Not echoed: a mistyped URL may still hold a password.
        Err("expected `sqlite` or a postgres:// URL".into())
    }
}

/// An opened store, and its wake bus when other servers may share it.
pub struct Opened {
    pub store: Arc<dyn Store>,
    pub replicas: Option<Arc<dyn WakeBus>>,
    /// What to tell the operator: the file, or `host:port/database` (never credentials).
    pub describe: String,
}

impl StoreChoice {
    pub async fn open(&self, data_dir: &Path) -> anyhow::Result<Opened> {
        match self {
            StoreChoice::Sqlite => {
                let db = data_dir.join("fleetrun.db");
                let store =
                    SqliteStore::open(&db).with_context(|| format!("opening {}", db.display()))?;
                Ok(Opened {
                    store: Arc::new(store),
                    replicas: None,
                    describe: db.display().to_string(),
                })
            }
            StoreChoice::Postgres(url) => {
                let store = PostgresStore::connect(url)
                    .await
                    .context("opening the PostgreSQL store")?;
                let describe = format!("postgres {}", store.target());
                Ok(Opened {
                    replicas: Some(Arc::new(store.wake_bus())),
                    store: Arc::new(store),
                    describe,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_never_shows_the_url() {
        assert!(matches!("sqlite".parse(), Ok(StoreChoice::Sqlite)));
        let pg: StoreChoice = "postgres://fleet:s3cret@db:5432/fleetrun"
            .parse()
            .expect("pg");
        assert_eq!(format!("{pg:?}"), "postgres");
        assert!("postgresql://db/fleetrun".parse::<StoreChoice>().is_ok());
        let err = "mysql://fleet:s3cret@db/x"
            .parse::<StoreChoice>()
            .map(|_| ())
            .expect_err("refused");
        assert!(!err.contains("s3cret"), "{err}");
    }
}
