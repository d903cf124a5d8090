//! The stores a phase runs on: a fresh SQLite file, or a fresh PostgreSQL database (created through
//! `--postgres`'s admin URL and dropped when the phase ends), so each figure starts from an empty
//! store and the two backends are measured in the same run, on the same machine, side by side.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use fleetrun_core::store::WakeBus;
use fleetrun_core::Store;
use fleetrun_store::postgres::TempDatabase;
use fleetrun_store::{PostgresStore, SqliteStore};

use crate::seed;

/// Which backend a figure was measured on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn label(self) -> &'static str {
        match self {
            Backend::Sqlite => "SQLite",
            Backend::Postgres => "PostgreSQL",
        }
    }
}

/// One phase's store. On PostgreSQL it owns its database, dropped with it.
pub enum PhaseStore {
    Sqlite(SqliteStore),
    Postgres {
        store: PostgresStore,
        database: TempDatabase,
    },
}

impl PhaseStore {
    /// An empty store of `backend`: `fleetrun.db` under `dir`, or a new database via `admin_url`.
    pub async fn create(
        backend: Backend,
        dir: &Path,
        admin_url: Option<&str>,
    ) -> anyhow::Result<Self> {
        match backend {
            Backend::Sqlite => Ok(PhaseStore::Sqlite(
                SqliteStore::open(&dir.join("fleetrun.db")).map_err(|e| anyhow::anyhow!("{e}"))?,
            )),
            Backend::Postgres => {
                let admin = admin_url.context("PostgreSQL phases need --postgres URL")?;
                let database = TempDatabase::create(admin)
                    .await
                    .map_err(|e| anyhow::anyhow!("creating a database via {admin}: {e}"))?;
                let store = PostgresStore::connect(database.url())
                    .await
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                Ok(PhaseStore::Postgres { store, database })
            }
        }
    }

    /// The store as the server takes it, with its wake bus on PostgreSQL.
    pub fn server_store(&self) -> (Arc<dyn Store>, Option<Arc<dyn WakeBus>>) {
        match self {
            PhaseStore::Sqlite(s) => (Arc::new(s.clone()), None),
            PhaseStore::Postgres { store, .. } => {
                (Arc::new(store.clone()), Some(Arc::new(store.wake_bus())))
            }
        }
    }

    /// Another server's own connection pool and wake bus on the same database (a replica).
    pub async fn replica(&self) -> anyhow::Result<(Arc<dyn Store>, Option<Arc<dyn WakeBus>>)> {
        match self {
            PhaseStore::Sqlite(_) => anyhow::bail!("replicas need PostgreSQL"),
            PhaseStore::Postgres { database, .. } => {
                let store = PostgresStore::connect(database.url())
                    .await
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                let bus: Arc<dyn WakeBus> = Arc::new(store.wake_bus());
                Ok((Arc::new(store), Some(bus)))
            }
        }
    }

    /// The `--store` URL a `fleetrun server` child process takes for this database.
    pub fn url(&self) -> Option<&str> {
        match self {
            PhaseStore::Sqlite(_) => None,
            PhaseStore::Postgres { database, .. } => Some(database.url()),
        }
    }

    pub fn seed_target(&self) -> seed::Target<'_> {
        match self {
            PhaseStore::Sqlite(s) => seed::Target::Sqlite(s),
            PhaseStore::Postgres { store, .. } => seed::Target::Postgres(store),
        }
    }
}
