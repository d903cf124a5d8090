//! fleetrun's storage backends behind [`fleetrun_core::Store`].
//!
//! Today there is one: [`SqliteStore`], an embedded SQLite database (one file, WAL mode) that needs no
//! separate service. The domain rules (state transitions, the command aggregate, filter semantics) live
//! in `fleetrun-core`; this crate only persists them, atomically and with indexed, keyset-paged queries.

mod sqlite;

pub use sqlite::SqliteStore;
