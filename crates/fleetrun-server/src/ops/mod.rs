//! One module per operation family: decode-validated input → domain call → response shape.

pub mod access_keys;
pub mod activations;
pub mod authorize;
pub mod cancel;
pub mod deregister;
pub mod documents;
pub mod get_invocation;
pub mod instances;
pub mod list;
pub mod list_documents;
pub mod logs;
pub mod output;
mod paging;
pub mod resource_groups;
pub mod send_command;
pub mod tags;
pub mod targets;
mod validate;
