//! ListCommands / ListCommandInvocations semantics: filters (fact sheet §5) and the paging key.
//!
//! Filters are ANDed. Results are newest first by (requested_at, seq); a page continues strictly after
//! the last row of the previous one, so commands sent while a client pages never shift later pages.

use crate::clock::{parse_timestamp, Millis};
use crate::ids::{CommandId, InstanceId};
use crate::status::{CommandStatus, InvocationState, InvocationStatus};

/// A Status filter value: either a coarse status or one fine StatusDetails value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StatusMatch {
    /// Matches the coarse Status column.
    Status(&'static str),
    /// Matches the StatusDetails column.
    Details(&'static str),
}

/// `ExecutionStage` values (ListCommands only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExecutionStage {
    Executing,
    Complete,
}

/// A parsed, validated set of filters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct CommandQuery {
    pub command_id: Option<CommandId>,
    pub instance_id: Option<InstanceId>,
    /// Inclusive lower bound on RequestedDateTime.
    pub invoked_after: Option<Millis>,
    /// Exclusive upper bound on RequestedDateTime.
    pub invoked_before: Option<Millis>,
    pub statuses: Vec<StatusMatch>,
    pub document_names: Vec<String>,
    pub stage: Option<ExecutionStage>,
}

/// Which operation the filters belong to; they accept different keys and values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListKind {
    Commands,
    Invocations,
}

/// Why a filter was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FilterError {
    /// The key is not one the operation accepts → `InvalidFilterKey`.
    UnknownKey(String),
    /// The value does not fit the key → a client error naming the value.
    BadValue {
        key: String,
        value: String,
        expected: String,
    },
    /// `InstanceId` together with `Status=Pending` (ListCommands).
    PendingWithInstance,
}

const COMMAND_STATUS_VALUES: [&str; 6] = [
    "Pending",
    "InProgress",
    "Success",
    "Cancelled",
    "Failed",
    "TimedOut",
];
const COMMAND_DETAIL_VALUES: [&str; 6] = [
    "AccessDenied",
    "DeliveryTimedOut",
    "ExecutionTimedOut",
    "Incomplete",
    "NoInstancesInTag",
    "LimitExceeded",
];
const INVOCATION_STATUS_VALUES: [&str; 7] = [
    "Pending",
    "InProgress",
    "Delayed",
    "Success",
    "Cancelled",
    "Failed",
    "TimedOut",
];
const INVOCATION_DETAIL_VALUES: [&str; 6] = [
    "AccessDenied",
    "DeliveryTimedOut",
    "ExecutionTimedOut",
    "Undeliverable",
    "InvalidPlatform",
    "Terminated",
];

fn status_match(kind: ListKind, value: &str) -> Option<StatusMatch> {
    let (coarse, details): (&[&'static str], &[&'static str]) = match kind {
        ListKind::Commands => (&COMMAND_STATUS_VALUES, &COMMAND_DETAIL_VALUES),
        ListKind::Invocations => (&INVOCATION_STATUS_VALUES, &INVOCATION_DETAIL_VALUES),
    };
    if let Some(v) = coarse.iter().find(|v| **v == value) {
        return Some(StatusMatch::Status(v));
    }
    details
        .iter()
        .find(|v| **v == value)
        .map(|v| StatusMatch::Details(v))
}

/// The Status filter values an operation accepts, for error messages.
pub fn status_values(kind: ListKind) -> Vec<&'static str> {
    match kind {
        ListKind::Commands => COMMAND_STATUS_VALUES
            .iter()
            .chain(COMMAND_DETAIL_VALUES.iter())
            .copied()
            .collect(),
        ListKind::Invocations => INVOCATION_STATUS_VALUES
            .iter()
            .chain(INVOCATION_DETAIL_VALUES.iter())
            .copied()
            .collect(),
    }
}

impl CommandQuery {
    /// Adds one `{key, value}` filter.
    pub fn add_filter(
        &mut self,
        kind: ListKind,
        key: &str,
        value: &str,
    ) -> Result<(), FilterError> {
        let bad = |expected: &str| FilterError::BadValue {
            key: key.to_string(),
            value: value.to_string(),
            expected: expected.to_string(),
        };
        match key {
            "InvokedAfter" | "InvokedBefore" => {
                let t = parse_timestamp(value)
                    .ok_or_else(|| bad("an ISO-8601 timestamp such as 2024-07-07T00:00:00Z"))?;
                if key == "InvokedAfter" {
                    self.invoked_after = Some(self.invoked_after.map_or(t, |old| old.max(t)));
                } else {
                    self.invoked_before = Some(self.invoked_before.map_or(t, |old| old.min(t)));
                }
            }
            "Status" => {
                let m = status_match(kind, value)
                    .ok_or_else(|| bad(&status_values(kind).join(", ")))?;
                self.statuses.push(m);
            }
            "DocumentName" => self.document_names.push(value.to_string()),
            "ExecutionStage" if kind == ListKind::Commands => {
                self.stage = Some(match value {
                    "Executing" => ExecutionStage::Executing,
                    "Complete" => ExecutionStage::Complete,
                    _ => return Err(bad("Executing, Complete")),
                });
            }
            other => return Err(FilterError::UnknownKey(other.to_string())),
        }
        Ok(())
    }

    /// Checks combinations that are invalid as a whole.
    pub fn check(&self, kind: ListKind) -> Result<(), FilterError> {
        if kind == ListKind::Commands
            && self.instance_id.is_some()
            && self.statuses.contains(&StatusMatch::Status("Pending"))
        {
            return Err(FilterError::PendingWithInstance);
        }
        Ok(())
    }

    /// A stable fingerprint of the query, bound into paging tokens so a token only continues its own query.
    pub fn fingerprint(&self) -> String {
        format!("{self:?}")
    }
}

/// The position after which the next page starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageKey {
    pub requested_at: Millis,
    pub seq: i64,
    /// For invocations: the node id, the last tiebreak within one command.
    pub instance_id: Option<String>,
}

/// The coarse-status column value an invocation filter should compare against.
pub fn invocation_status_str(s: InvocationState) -> &'static str {
    let coarse: InvocationStatus = s.status();
    coarse.as_str()
}

/// The coarse-status column value for a command.
pub fn command_status_str(s: CommandStatus) -> &'static str {
    s.as_str()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_parse_and_combine() {
        let mut q = CommandQuery::default();
        q.add_filter(ListKind::Commands, "Status", "TimedOut")
            .expect("ok");
        q.add_filter(ListKind::Commands, "Status", "Incomplete")
            .expect("ok");
        q.add_filter(ListKind::Commands, "ExecutionStage", "Complete")
            .expect("ok");
        q.add_filter(ListKind::Commands, "InvokedAfter", "2024-07-07T00:00:00Z")
            .expect("ok");
        q.add_filter(ListKind::Commands, "InvokedAfter", "2024-07-08T00:00:00Z")
            .expect("ok");
        assert_eq!(q.invoked_after, Some(1_720_396_800_000));
        assert_eq!(
            q.statuses,
            vec![
                StatusMatch::Status("TimedOut"),
                StatusMatch::Details("Incomplete")
            ]
        );
        assert_eq!(q.stage, Some(ExecutionStage::Complete));
    }

    #[test]
    fn filter_errors() {
        let mut q = CommandQuery::default();
        assert_eq!(
            q.add_filter(ListKind::Commands, "Foo", "x"),
            Err(FilterError::UnknownKey("Foo".into()))
        );
        assert_eq!(
            q.add_filter(ListKind::Invocations, "ExecutionStage", "Complete"),
            Err(FilterError::UnknownKey("ExecutionStage".into()))
        );
        assert!(matches!(
            q.add_filter(ListKind::Commands, "Status", "Delayed"),
            Err(FilterError::BadValue { .. })
        ));
        assert!(q
            .add_filter(ListKind::Invocations, "Status", "Delayed")
            .is_ok());
        assert!(matches!(
            q.add_filter(ListKind::Commands, "InvokedBefore", "last week"),
            Err(FilterError::BadValue { .. })
        ));
        assert!(matches!(
            q.add_filter(ListKind::Commands, "ExecutionStage", "Done"),
            Err(FilterError::BadValue { .. })
        ));
        let mut q = CommandQuery {
            instance_id: InstanceId::parse("mi-0123456789abcdef0"),
            ..Default::default()
        };
        q.add_filter(ListKind::Commands, "Status", "Pending")
            .expect("ok");
        assert_eq!(
            q.check(ListKind::Commands),
            Err(FilterError::PendingWithInstance)
        );
        assert_eq!(q.check(ListKind::Invocations), Ok(()));
    }
}
