//! The status truth: invocation transitions and the command aggregate, as pure functions.
//!
//! Rules come from the fact sheet §6–§8. Storage applies [`transition`] with compare-and-set and keeps
//! per-state counts for each command; [`aggregate`] turns those counts into the command's Status,
//! StatusDetails and the four counters AWS reports. Choices where AWS documents nothing are marked
//! "choice:" and listed in ARCHITECTURE.md.

use serde::{Deserialize, Serialize};

/// An invocation's fine state; its name is the `StatusDetails` wire value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum InvocationState {
    Pending,
    InProgress,
    Delayed,
    Cancelling,
    Success,
    Failed,
    ExecutionTimedOut,
    DeliveryTimedOut,
    Cancelled,
    Undeliverable,
    Terminated,
    InvalidPlatform,
    AccessDenied,
}

/// The coarse `CommandInvocationStatus` enum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InvocationStatus {
    Pending,
    InProgress,
    Delayed,
    Success,
    Cancelled,
    TimedOut,
    Failed,
    Cancelling,
}

impl InvocationState {
    pub const ALL: [InvocationState; 13] = [
        Self::Pending,
        Self::InProgress,
        Self::Delayed,
        Self::Cancelling,
        Self::Success,
        Self::Failed,
        Self::ExecutionTimedOut,
        Self::DeliveryTimedOut,
        Self::Cancelled,
        Self::Undeliverable,
        Self::Terminated,
        Self::InvalidPlatform,
        Self::AccessDenied,
    ];

    /// Index into per-state count arrays.
    pub fn index(self) -> usize {
        Self::ALL.iter().position(|s| *s == self).unwrap_or(0)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "Pending",
            Self::InProgress => "InProgress",
            Self::Delayed => "Delayed",
            Self::Cancelling => "Cancelling",
            Self::Success => "Success",
            Self::Failed => "Failed",
            Self::ExecutionTimedOut => "ExecutionTimedOut",
            Self::DeliveryTimedOut => "DeliveryTimedOut",
            Self::Cancelled => "Cancelled",
            Self::Undeliverable => "Undeliverable",
            Self::Terminated => "Terminated",
            Self::InvalidPlatform => "InvalidPlatform",
            Self::AccessDenied => "AccessDenied",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|v| v.as_str() == s)
    }

    pub fn is_terminal(self) -> bool {
        !matches!(
            self,
            Self::Pending | Self::InProgress | Self::Delayed | Self::Cancelling
        )
    }

    /// Counts toward MaxErrors and ErrorCount (§6.2): Failed and ExecutionTimedOut only.
    pub fn is_error(self) -> bool {
        matches!(self, Self::Failed | Self::ExecutionTimedOut)
    }

    /// Counts toward CompletedCount (§4.1).
    pub fn is_completed(self) -> bool {
        matches!(
            self,
            Self::Success
                | Self::Failed
                | Self::ExecutionTimedOut
                | Self::DeliveryTimedOut
                | Self::Cancelled
                | Self::Terminated
                | Self::Undeliverable
        )
    }

    /// The coarse Status. choice: Terminated → Cancelled (the system cancelled it); Undeliverable,
    /// InvalidPlatform and AccessDenied → Failed (Undeliverable → Failed is observed on AWS).
    pub fn status(self) -> InvocationStatus {
        match self {
            Self::Pending => InvocationStatus::Pending,
            Self::InProgress => InvocationStatus::InProgress,
            Self::Delayed => InvocationStatus::Delayed,
            Self::Cancelling => InvocationStatus::Cancelling,
            Self::Success => InvocationStatus::Success,
            Self::Failed | Self::Undeliverable | Self::InvalidPlatform | Self::AccessDenied => {
                InvocationStatus::Failed
            }
            Self::ExecutionTimedOut | Self::DeliveryTimedOut => InvocationStatus::TimedOut,
            Self::Cancelled | Self::Terminated => InvocationStatus::Cancelled,
        }
    }
}

impl InvocationStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "Pending",
            Self::InProgress => "InProgress",
            Self::Delayed => "Delayed",
            Self::Success => "Success",
            Self::Cancelled => "Cancelled",
            Self::TimedOut => "TimedOut",
            Self::Failed => "Failed",
            Self::Cancelling => "Cancelling",
        }
    }
}

/// What happened to a command delivered to a node: what its agent reports, or `InvalidPlatform`
/// when the server finds at delivery that the node's platform is not among the document's
/// (nothing ran).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExecutionOutcome {
    Success,
    Failed,
    TimedOut,
    Cancelled,
    InvalidPlatform,
}

/// Everything that can happen to an invocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvocationEvent {
    /// The agent took the invocation off its channel.
    Delivered,
    /// The node's channel is down when the dispatcher wanted to send.
    DeliveryFailed,
    /// The agent reported a final outcome.
    Finished(ExecutionOutcome),
    /// CancelCommand named this invocation.
    CancelRequested,
    /// ExpiresAfter passed.
    Expired,
    /// The node was deregistered before the invocation reached it.
    NodeGone,
    /// The parent exceeded MaxErrors before this invocation was sent.
    Terminated,
    /// The agent restarted (new session) and no longer knows this invocation: it died with the old process.
    LostByAgent,
    /// The sender's policies do not allow running the command on this node (a tag-targeted send).
    AccessDenied,
    /// The command's alarm went into ALARM (or could not be read): what has not reached its node
    /// never runs; what runs finishes (ARCHITECTURE.md, "Alarms").
    AlarmStopped,
}

/// The state an invocation moves to, or `None` when the event does not apply (the caller ignores it,
/// which makes duplicate or late reports harmless).
pub fn transition(from: InvocationState, event: InvocationEvent) -> Option<InvocationState> {
    use InvocationEvent as E;
    use InvocationState as S;
    match (from, event) {
        (S::Pending | S::Delayed, E::Delivered) => Some(S::InProgress),
        (S::Pending, E::DeliveryFailed) => Some(S::Delayed),
        (S::InProgress | S::Cancelling, E::Finished(outcome)) => Some(match outcome {
            ExecutionOutcome::Success => S::Success,
            ExecutionOutcome::Failed => S::Failed,
            ExecutionOutcome::TimedOut => S::ExecutionTimedOut,
            ExecutionOutcome::Cancelled => S::Cancelled,
            ExecutionOutcome::InvalidPlatform => S::InvalidPlatform,
        }),
        // Never reached the node: cancelling stops it outright.
        (S::Pending | S::Delayed, E::CancelRequested) => Some(S::Cancelled),
        (S::InProgress, E::CancelRequested) => Some(S::Cancelling),
        (S::Pending | S::InProgress | S::Delayed, E::Expired) => Some(S::DeliveryTimedOut),
        // choice: a cancel that the agent never confirmed before expiry counts as done.
        (S::Cancelling, E::Expired) => Some(S::Cancelled),
        (S::Pending | S::Delayed, E::NodeGone) => Some(S::Undeliverable),
        (S::Pending | S::Delayed, E::Terminated) => Some(S::Terminated),
        (S::InProgress, E::LostByAgent) => Some(S::Failed),
        (S::Cancelling, E::LostByAgent) => Some(S::Cancelled),
        (S::Pending, E::AccessDenied) => Some(S::AccessDenied),
        (S::Pending | S::Delayed, E::AlarmStopped) => Some(S::Cancelled),
        _ => None,
    }
}

/// Per-state invocation counts of one command.
///
/// Stored keyed by state name (`{"Pending":2,"Success":1}`, zeros left out), so adding or
/// reordering a state never changes what an old row means.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StateCounts(pub [u32; 13]);

impl Serialize for StateCounts {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let nonzero = InvocationState::ALL.iter().filter(|s| self.get(**s) > 0);
        let mut map = serializer.serialize_map(Some(nonzero.clone().count()))?;
        for state in nonzero {
            map.serialize_entry(state.as_str(), &self.get(*state))?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for StateCounts {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let by_name = std::collections::BTreeMap::<String, u32>::deserialize(deserializer)?;
        let mut counts = StateCounts::default();
        for (name, n) in by_name {
            let state = InvocationState::parse(&name).ok_or_else(|| {
                serde::de::Error::custom(format!("unknown invocation state {name:?}"))
            })?;
            counts.add(state, n);
        }
        Ok(counts)
    }
}

impl StateCounts {
    /// Reads the positional form stored before counts were keyed by name: one number per state, in
    /// the order of [`InvocationState::ALL`] as it stood then (which is its order now). For
    /// migrations only.
    pub fn from_positional(counts: &[u32]) -> Option<StateCounts> {
        let array: [u32; 13] = counts.try_into().ok()?;
        Some(StateCounts(array))
    }

    pub fn get(&self, s: InvocationState) -> u32 {
        self.0[s.index()]
    }

    pub fn add(&mut self, s: InvocationState, n: u32) {
        self.0[s.index()] += n;
    }

    /// Moves one invocation from `from` to `to`.
    pub fn shift(&mut self, from: InvocationState, to: InvocationState) {
        let i = from.index();
        self.0[i] = self.0[i].saturating_sub(1);
        self.0[to.index()] += 1;
    }

    pub fn total(&self) -> u32 {
        self.0.iter().sum()
    }

    fn sum_where(&self, pred: impl Fn(InvocationState) -> bool) -> u32 {
        InvocationState::ALL
            .iter()
            .filter(|s| pred(**s))
            .map(|s| self.get(*s))
            .sum()
    }

    pub fn completed(&self) -> u32 {
        self.sum_where(InvocationState::is_completed)
    }

    pub fn errors(&self) -> u32 {
        self.sum_where(InvocationState::is_error)
    }

    pub fn terminal(&self) -> u32 {
        self.sum_where(InvocationState::is_terminal)
    }
}

/// A command's fine state; its name is the command `StatusDetails` wire value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CommandState {
    Pending,
    InProgress,
    Cancelling,
    Success,
    Failed,
    Incomplete,
    DeliveryTimedOut,
    ExecutionTimedOut,
    Cancelled,
    NoInstancesInTag,
}

/// The coarse `CommandStatus` enum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CommandStatus {
    Pending,
    InProgress,
    Success,
    Cancelled,
    Failed,
    TimedOut,
    Cancelling,
}

impl CommandState {
    pub const ALL: [CommandState; 10] = [
        Self::Pending,
        Self::InProgress,
        Self::Cancelling,
        Self::Success,
        Self::Failed,
        Self::Incomplete,
        Self::DeliveryTimedOut,
        Self::ExecutionTimedOut,
        Self::Cancelled,
        Self::NoInstancesInTag,
    ];

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|v| v.as_str() == s)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "Pending",
            Self::InProgress => "InProgress",
            Self::Cancelling => "Cancelling",
            Self::Success => "Success",
            Self::Failed => "Failed",
            Self::Incomplete => "Incomplete",
            Self::DeliveryTimedOut => "DeliveryTimedOut",
            Self::ExecutionTimedOut => "ExecutionTimedOut",
            Self::Cancelled => "Cancelled",
            Self::NoInstancesInTag => "NoInstancesInTag",
        }
    }

    pub fn is_terminal(self) -> bool {
        !matches!(self, Self::Pending | Self::InProgress | Self::Cancelling)
    }

    /// choice: Incomplete → Failed (AWS leaves it open); NoInstancesInTag → Success (observed).
    pub fn status(self) -> CommandStatus {
        match self {
            Self::Pending => CommandStatus::Pending,
            Self::InProgress => CommandStatus::InProgress,
            Self::Cancelling => CommandStatus::Cancelling,
            Self::Success | Self::NoInstancesInTag => CommandStatus::Success,
            Self::Failed | Self::Incomplete => CommandStatus::Failed,
            Self::DeliveryTimedOut | Self::ExecutionTimedOut => CommandStatus::TimedOut,
            Self::Cancelled => CommandStatus::Cancelled,
        }
    }
}

impl CommandStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "Pending",
            Self::InProgress => "InProgress",
            Self::Success => "Success",
            Self::Cancelled => "Cancelled",
            Self::Failed => "Failed",
            Self::TimedOut => "TimedOut",
            Self::Cancelling => "Cancelling",
        }
    }
}

/// What the command reports, derived from its invocation counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommandAggregate {
    pub state: CommandState,
    pub target_count: u32,
    pub completed_count: u32,
    pub error_count: u32,
    pub delivery_timed_out_count: u32,
}

/// Derives the command's state from its invocations (§6.3, §7.3).
///
/// `max_errors` is the resolved MaxErrors threshold (errors must *exceed* it to fail the command);
/// `cancel_requested` is whether CancelCommand was called for the whole command.
pub fn aggregate(
    counts: &StateCounts,
    max_errors: u32,
    cancel_requested: bool,
) -> CommandAggregate {
    use InvocationState as S;
    let total = counts.total();
    let errors = counts.errors();
    let delivery_timed_out = counts.get(S::DeliveryTimedOut);
    let success = counts.get(S::Success);
    let state = if total == 0 {
        CommandState::NoInstancesInTag
    } else if counts.terminal() < total {
        if cancel_requested {
            CommandState::Cancelling
        } else if counts.get(S::Pending) == total {
            CommandState::Pending
        } else {
            CommandState::InProgress
        }
    } else if cancel_requested && counts.get(S::Cancelled) > 0 {
        CommandState::Cancelled
    } else if errors > max_errors {
        // choice: the timeout detail only when every error was an execution timeout.
        if counts.get(S::Failed) == 0 {
            CommandState::ExecutionTimedOut
        } else {
            CommandState::Failed
        }
    } else if delivery_timed_out > max_errors {
        CommandState::DeliveryTimedOut
    } else if success == total {
        CommandState::Success
    } else if success == 0 {
        // Nothing succeeded anywhere (all Undeliverable/Terminated/errors within budget…).
        CommandState::Failed
    } else if errors > 0 || delivery_timed_out > 0 || counts.get(S::Cancelled) > 0 {
        CommandState::Incomplete
    } else {
        // Successes plus only states that do not count against the command (Undeliverable, …).
        CommandState::Success
    };
    CommandAggregate {
        state,
        target_count: total,
        completed_count: counts.completed(),
        error_count: errors,
        delivery_timed_out_count: delivery_timed_out,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ExecutionOutcome as O;
    use InvocationEvent as E;
    use InvocationState as S;

    #[test]
    fn invocation_transition_table() {
        let table: &[(S, E, Option<S>)] = &[
            (S::Pending, E::Delivered, Some(S::InProgress)),
            (S::Delayed, E::Delivered, Some(S::InProgress)),
            (S::InProgress, E::Delivered, None),
            (S::Pending, E::DeliveryFailed, Some(S::Delayed)),
            (S::InProgress, E::Finished(O::Success), Some(S::Success)),
            (S::InProgress, E::Finished(O::Failed), Some(S::Failed)),
            (
                S::InProgress,
                E::Finished(O::TimedOut),
                Some(S::ExecutionTimedOut),
            ),
            (S::InProgress, E::Finished(O::Cancelled), Some(S::Cancelled)),
            (S::Cancelling, E::Finished(O::Cancelled), Some(S::Cancelled)),
            (
                S::InProgress,
                E::Finished(O::InvalidPlatform),
                Some(S::InvalidPlatform),
            ),
            (S::Pending, E::Finished(O::InvalidPlatform), None),
            (S::Cancelling, E::Finished(O::Success), Some(S::Success)),
            (S::Pending, E::Finished(O::Success), None),
            (S::Success, E::Finished(O::Failed), None),
            (S::Pending, E::CancelRequested, Some(S::Cancelled)),
            (S::Pending, E::AlarmStopped, Some(S::Cancelled)),
            (S::Delayed, E::AlarmStopped, Some(S::Cancelled)),
            (S::InProgress, E::AlarmStopped, None),
            (S::Success, E::AlarmStopped, None),
            (S::Delayed, E::CancelRequested, Some(S::Cancelled)),
            (S::InProgress, E::CancelRequested, Some(S::Cancelling)),
            (S::Success, E::CancelRequested, None),
            (S::Cancelling, E::CancelRequested, None),
            (S::Pending, E::Expired, Some(S::DeliveryTimedOut)),
            (S::InProgress, E::Expired, Some(S::DeliveryTimedOut)),
            (S::Delayed, E::Expired, Some(S::DeliveryTimedOut)),
            (S::Cancelling, E::Expired, Some(S::Cancelled)),
            (S::Failed, E::Expired, None),
            (S::Pending, E::NodeGone, Some(S::Undeliverable)),
            (S::InProgress, E::NodeGone, None),
            (S::Pending, E::Terminated, Some(S::Terminated)),
            (S::InProgress, E::Terminated, None),
            (S::InProgress, E::LostByAgent, Some(S::Failed)),
            (S::Cancelling, E::LostByAgent, Some(S::Cancelled)),
            (S::Pending, E::LostByAgent, None),
            (S::Pending, E::AccessDenied, Some(S::AccessDenied)),
            (S::InProgress, E::AccessDenied, None),
            (S::Delayed, E::AccessDenied, None),
        ];
        for (from, event, want) in table {
            assert_eq!(transition(*from, *event), *want, "{from:?} + {event:?}");
        }
    }

    #[test]
    fn terminal_states_never_move() {
        let events = [
            E::Delivered,
            E::DeliveryFailed,
            E::Finished(O::Success),
            E::CancelRequested,
            E::Expired,
            E::NodeGone,
            E::Terminated,
            E::LostByAgent,
            E::AccessDenied,
            E::AlarmStopped,
        ];
        for s in S::ALL.iter().filter(|s| s.is_terminal()) {
            for e in events {
                assert_eq!(transition(*s, e), None, "{s:?} + {e:?}");
            }
        }
    }

    fn counts(pairs: &[(S, u32)]) -> StateCounts {
        let mut c = StateCounts::default();
        for (s, n) in pairs {
            c.add(*s, *n);
        }
        c
    }

    #[test]
    fn command_aggregate_table() {
        // (counts, max_errors, cancel_requested, expected state, coarse status)
        let table: Vec<(StateCounts, u32, bool, CommandState, CommandStatus)> = vec![
            (
                counts(&[]),
                0,
                false,
                CommandState::NoInstancesInTag,
                CommandStatus::Success,
            ),
            (
                counts(&[(S::Pending, 3)]),
                0,
                false,
                CommandState::Pending,
                CommandStatus::Pending,
            ),
            (
                counts(&[(S::Pending, 2), (S::InProgress, 1)]),
                0,
                false,
                CommandState::InProgress,
                CommandStatus::InProgress,
            ),
            (
                counts(&[(S::Delayed, 1)]),
                0,
                false,
                CommandState::InProgress,
                CommandStatus::InProgress,
            ),
            (
                counts(&[(S::Success, 2), (S::Pending, 1)]),
                0,
                false,
                CommandState::InProgress,
                CommandStatus::InProgress,
            ),
            (
                counts(&[(S::Success, 3)]),
                0,
                false,
                CommandState::Success,
                CommandStatus::Success,
            ),
            (
                counts(&[(S::Failed, 1)]),
                0,
                false,
                CommandState::Failed,
                CommandStatus::Failed,
            ),
            (
                counts(&[(S::ExecutionTimedOut, 1)]),
                0,
                false,
                CommandState::ExecutionTimedOut,
                CommandStatus::TimedOut,
            ),
            (
                counts(&[(S::DeliveryTimedOut, 1)]),
                0,
                false,
                CommandState::DeliveryTimedOut,
                CommandStatus::TimedOut,
            ),
            (
                counts(&[(S::Failed, 1), (S::ExecutionTimedOut, 1)]),
                0,
                false,
                CommandState::Failed,
                CommandStatus::Failed,
            ),
            // Within the error budget with some success → Incomplete.
            (
                counts(&[(S::Success, 4), (S::Failed, 1)]),
                1,
                false,
                CommandState::Incomplete,
                CommandStatus::Failed,
            ),
            (
                counts(&[(S::Success, 4), (S::DeliveryTimedOut, 1)]),
                1,
                false,
                CommandState::Incomplete,
                CommandStatus::Failed,
            ),
            // MaxErrors exceeded: the rest Terminated.
            (
                counts(&[(S::Success, 1), (S::Failed, 2), (S::Terminated, 7)]),
                1,
                false,
                CommandState::Failed,
                CommandStatus::Failed,
            ),
            // Non-counting terminal states: all of them → Failed; with one success → Success (UG examples).
            (
                counts(&[(S::Undeliverable, 5)]),
                0,
                false,
                CommandState::Failed,
                CommandStatus::Failed,
            ),
            (
                counts(&[(S::Undeliverable, 4), (S::Success, 1)]),
                0,
                false,
                CommandState::Success,
                CommandStatus::Success,
            ),
            (
                counts(&[(S::Failed, 1)]),
                1,
                false,
                CommandState::Failed,
                CommandStatus::Failed,
            ),
            // Cancellation.
            (
                counts(&[(S::Cancelling, 1), (S::Pending, 0)]),
                0,
                true,
                CommandState::Cancelling,
                CommandStatus::Cancelling,
            ),
            (
                counts(&[(S::Cancelled, 2)]),
                0,
                true,
                CommandState::Cancelled,
                CommandStatus::Cancelled,
            ),
            (
                counts(&[(S::Cancelled, 1), (S::Success, 1)]),
                0,
                true,
                CommandState::Cancelled,
                CommandStatus::Cancelled,
            ),
            // Cancel requested but everything had already finished successfully.
            (
                counts(&[(S::Success, 2)]),
                0,
                true,
                CommandState::Success,
                CommandStatus::Success,
            ),
        ];
        for (c, max_errors, cancel, want, coarse) in table {
            let agg = aggregate(&c, max_errors, cancel);
            assert_eq!(
                agg.state, want,
                "{c:?} max_errors={max_errors} cancel={cancel}"
            );
            assert_eq!(agg.state.status(), coarse, "{want:?}");
        }
    }

    #[test]
    fn aggregate_counters() {
        let c = counts(&[
            (S::Success, 2),
            (S::Failed, 1),
            (S::ExecutionTimedOut, 1),
            (S::DeliveryTimedOut, 1),
            (S::Terminated, 1),
            (S::Undeliverable, 1),
            (S::Cancelled, 1),
            (S::InProgress, 1),
        ]);
        let agg = aggregate(&c, 10, false);
        assert_eq!(agg.target_count, 9);
        assert_eq!(agg.completed_count, 8);
        assert_eq!(agg.error_count, 2);
        assert_eq!(agg.delivery_timed_out_count, 1);
        assert_eq!(agg.state, CommandState::InProgress);
    }

    #[test]
    fn coarse_invocation_status() {
        assert_eq!(S::ExecutionTimedOut.status(), InvocationStatus::TimedOut);
        assert_eq!(S::DeliveryTimedOut.status(), InvocationStatus::TimedOut);
        assert_eq!(S::Undeliverable.status(), InvocationStatus::Failed);
        assert_eq!(S::Terminated.status(), InvocationStatus::Cancelled);
        for s in S::ALL {
            assert_eq!(S::parse(s.as_str()), Some(s));
        }
    }

    #[test]
    fn counts_are_stored_by_state_name() {
        let c = counts(&[(S::Pending, 2), (S::Success, 1)]);
        let json = serde_json::to_string(&c).expect("serialize");
        assert_eq!(json, r#"{"Pending":2,"Success":1}"#);
        assert_eq!(
            serde_json::from_str::<StateCounts>(&json).expect("parse"),
            c
        );
        assert_eq!(
            serde_json::from_str::<StateCounts>("{}").expect("parse"),
            StateCounts::default()
        );
        assert!(serde_json::from_str::<StateCounts>(r#"{"Exploded":1}"#).is_err());
        let mut positional = [0u32; 13];
        positional[S::Success.index()] = 4;
        assert_eq!(
            StateCounts::from_positional(&positional),
            Some(counts(&[(S::Success, 4)]))
        );
        assert_eq!(StateCounts::from_positional(&[1, 2]), None);
    }
}
