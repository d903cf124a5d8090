//! fleetrun's domain: identifiers, commands and invocations, the status state machine, documents and
//! their parameters, ListCommands query semantics, and the [`Store`] trait the backends implement.
//!
//! This crate knows nothing of HTTP, SQL or the AWS wire format; the server translates wire shapes into
//! these types and [`CoreError`] into AWS error codes.

pub mod access;
pub mod alarms;
pub mod clock;
pub mod command;
pub mod content_guard;
pub mod document;
pub mod document_content;
pub mod documents;
pub mod error;
pub mod ids;
pub mod lifecycle;
pub mod live_output;
pub mod node;
pub mod notification;
pub mod output;
pub mod query;
pub mod rate;
pub mod resource_groups;
pub mod s3_output;
pub mod status;
pub mod step_skips;
pub mod store;
pub mod targets;

pub use error::CoreError;
pub use store::Store;
