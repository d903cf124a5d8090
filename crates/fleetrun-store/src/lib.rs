//! fleetrun's storage backends behind [`fleetrun_core::Store`].
//!
//! Two of them: [`SqliteStore`], an embedded SQLite database (one file, WAL mode) that needs no
//! separate service, and [`PostgresStore`], a PostgreSQL database that several fleetrun servers can
//! share. The domain rules (state transitions, the command aggregate, filter semantics) live in
//! `fleetrun-core`; this crate only persists them, atomically and with indexed, keyset-paged
//! queries. Both pass the same conformance suite (`tests/conformance`).

pub mod postgres;
mod sqlite;

pub use postgres::{PoolOptions, PostgresStore};
pub use sqlite::SqliteStore;
