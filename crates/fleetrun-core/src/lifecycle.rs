//! The command lifecycle's decisions after SendCommand, as pure functions: what a transition does to
//! its command's bookkeeping, when the rollout releases more nodes or terminates the rest, how a
//! reconnecting agent's held work is reconciled, what a cancel reaches and how a report is dated.
//!
//! A storage backend reads rows, asks these functions, and writes what they decide inside its own
//! transaction (ARCHITECTURE.md, "The lifecycle in core"). Every state change still goes through
//! [`crate::status::transition`]; what changed is collected in an [`Effects`] value that the server
//! applies in one place.

use crate::clock::Millis;
use crate::command::{Report, StepResult};
use crate::ids::{CommandId, InstanceId};
use crate::rate::{error_budget_exceeded, Limit, Rollout};
use crate::status::{aggregate, CommandAggregate, CommandState, InvocationState, StateCounts};
use crate::CoreError;

/// A command's counters as a transaction sees them: loaded once, changed by each transition of one
/// of its invocations, written back when the transaction commits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tally {
    pub counts: StateCounts,
    pub error_budget: u32,
    pub cancel_requested: bool,
    /// MaxConcurrency as sent (`"50"`, `"10%"`).
    pub max_concurrency: String,
    /// `total` and `concurrency` are filled in by [`Tally::next_step`].
    pub rollout: Rollout,
    /// The command's state when loaded, to tell whether the transaction changed it.
    pub loaded_state: CommandState,
}

/// What a command's rollout does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RolloutStep {
    /// Nothing to release now (the ramp or MaxConcurrency is full, everything is out, or the
    /// command is being cancelled).
    Hold,
    /// Release this many more invocations (in node order) to their nodes.
    Release(u32),
    /// MaxErrors is exceeded: every invocation not yet delivered ends Terminated.
    TerminateUndelivered,
}

impl Tally {
    /// Bookkeeping for one applied transition of an invocation of this command: its per-state
    /// count, and for released invocations the ramp's acknowledged/settled counters (see
    /// [`Rollout`]: an invocation is acknowledged once it left Pending for any reason).
    pub fn record(&mut self, from: InvocationState, to: InvocationState, released: bool) {
        self.counts.shift(from, to);
        if released {
            if from == InvocationState::Pending {
                self.rollout.acked += 1;
            }
            if !from.is_terminal() && to.is_terminal() {
                self.rollout.settled += 1;
            }
        }
    }

    /// The rollout's next step, decided on the counts as they stand.
    pub fn next_step(&mut self) -> RolloutStep {
        if self.cancel_requested {
            return RolloutStep::Hold;
        }
        if error_budget_exceeded(self.counts.errors(), self.error_budget) {
            return RolloutStep::TerminateUndelivered;
        }
        let total = self.counts.total();
        self.rollout.total = total;
        self.rollout.concurrency =
            Limit::parse(&self.max_concurrency).map_or(total, |l| l.concurrency(total));
        match self.rollout.releasable() {
            0 => RolloutStep::Hold,
            n => RolloutStep::Release(n),
        }
    }

    /// Records that `n` invocations were released (fewer than asked when fewer were left).
    pub fn released(&mut self, n: usize) {
        let n = u32::try_from(n).unwrap_or(u32::MAX);
        self.rollout.released = self.rollout.released.saturating_add(n);
    }

    /// The command's status from its counts.
    pub fn aggregate(&self) -> CommandAggregate {
        aggregate(&self.counts, self.error_budget, self.cancel_requested)
    }
}

/// What a poll does with an invocation the node should be holding (InProgress or Cancelling).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeldAction {
    /// Handed out on this same agent session, yet not listed: the answer carrying it was lost.
    /// Deliver it again.
    Resend,
    /// Not listed by an agent on a new session: it died with the previous agent process
    /// ([`crate::status::InvocationEvent::LostByAgent`]).
    Lose,
    /// Cancelling and the agent has not been told yet: send the cancel (once).
    SendCancel,
    /// Nothing to do.
    Keep,
}

/// Reconciles one held invocation against what the polling agent lists in `knownCommands`. An agent
/// that restarted and resumed a command lists it again, so only work it truly lost is lost.
pub fn reconcile_held(
    state: InvocationState,
    listed: bool,
    delivered_on_this_session: bool,
    cancel_sent: bool,
) -> HeldAction {
    match state {
        InvocationState::InProgress if !listed && delivered_on_this_session => HeldAction::Resend,
        _ if !listed => HeldAction::Lose,
        InvocationState::Cancelling if !cancel_sent => HeldAction::SendCancel,
        _ => HeldAction::Keep,
    }
}

/// Which invocations a CancelCommand reaches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CancelScope {
    /// Positions in the command's invocation list, each once, in the order asked.
    pub targets: Vec<usize>,
    /// The cancel covers every invocation, so the command itself becomes Cancelling/Cancelled.
    /// choice: a cancel of some nodes only leaves the command to finish as Incomplete or Failed.
    pub whole_command: bool,
}

/// The scope of a cancel of `requested` nodes (`None` = all) of a command whose invocations are on
/// `nodes`. A named node without an invocation of the command is `UnknownInstance`.
pub fn cancel_scope(
    nodes: &[&str],
    requested: Option<&[InstanceId]>,
) -> Result<CancelScope, CoreError> {
    let targets: Vec<usize> = match requested {
        None => (0..nodes.len()).collect(),
        Some(requested) => {
            let mut targets: Vec<usize> = Vec::new();
            for node in requested {
                let Some(at) = nodes.iter().position(|n| *n == node.as_str()) else {
                    return Err(CoreError::UnknownInstance(node.to_string()));
                };
                if !targets.contains(&at) {
                    targets.push(at);
                }
            }
            targets
        }
    };
    Ok(CancelScope {
        whole_command: targets.len() == nodes.len(),
        targets,
    })
}

/// When a reported invocation ran, by the server's clock, and its steps' times.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportTimes {
    pub started_at: Millis,
    pub ended_at: Millis,
    pub steps: Vec<StepResult>,
}

/// Dates a report received at `now` for an invocation delivered at `delivered_at`: the end is
/// [`Report::ended_at`], the start that minus the reported elapsed time, each step at its offset.
pub fn report_times(report: &Report, now: Millis, delivered_at: Option<Millis>) -> ReportTimes {
    let ended_at = report.ended_at(now, delivered_at);
    let started_at = ended_at.saturating_sub(report.elapsed_ms.max(0));
    let steps = report
        .steps
        .iter()
        .map(|s| {
            let step_start = started_at.saturating_add(s.start_offset_ms);
            StepResult {
                name: s.name.clone(),
                status: s.status.clone(),
                exit_code: s.exit_code,
                started_at: step_start,
                ended_at: step_start.saturating_add(s.duration_ms),
                stdout: s.stdout.clone(),
                stderr: s.stderr.clone(),
                stdout_truncated: s.stdout_truncated,
                stderr_truncated: s.stderr_truncated,
            }
        })
        .collect();
    ReportTimes {
        started_at,
        ended_at,
        steps,
    }
}

/// One invocation's state change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvocationChange {
    pub command_id: CommandId,
    pub instance_id: InstanceId,
    pub from: InvocationState,
    pub to: InvocationState,
}

/// One command's state change (its StatusDetails).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandChange {
    pub command_id: CommandId,
    pub from: CommandState,
    pub to: CommandState,
}

/// What a store call changed, for the server to act on after the commit: which agents to wake and
/// which transitions happened (where wake-ups across replicas, metrics and notifications attach).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Effects {
    /// Nodes whose long poll has something new: released work, or a cancel to carry. Each once,
    /// in the order they got it.
    pub wake: Vec<InstanceId>,
    pub invocations: Vec<InvocationChange>,
    pub commands: Vec<CommandChange>,
}

impl Effects {
    /// Records an applied invocation transition. An invocation that became Cancelling needs its
    /// agent told, so its node is woken.
    pub fn invocation_changed(&mut self, change: InvocationChange) {
        if change.to == InvocationState::Cancelling {
            self.wake(change.instance_id.clone());
        }
        self.invocations.push(change);
    }

    /// Records a command whose status changed.
    pub fn command_changed(&mut self, command_id: CommandId, from: CommandState, to: CommandState) {
        if from != to {
            self.commands.push(CommandChange {
                command_id,
                from,
                to,
            });
        }
    }

    /// Wakes `node`'s long poll. Repeats are removed by [`Effects::settled`], once per call, so
    /// a release to thousands of nodes stays linear.
    pub fn wake(&mut self, node: InstanceId) {
        self.wake.push(node);
    }

    /// The effects as a store call returns them: each node woken once, in the order first asked.
    pub fn settled(mut self) -> Effects {
        let mut seen = std::collections::HashSet::with_capacity(self.wake.len());
        self.wake.retain(|n| seen.insert(n.clone()));
        self
    }

    /// The same effects without waking `node` (the poll being answered needs no wake-up).
    pub fn without_wake(mut self, node: &InstanceId) -> Effects {
        self.wake.retain(|n| n != node);
        self
    }

    pub fn is_empty(&self) -> bool {
        self.wake.is_empty() && self.invocations.is_empty() && self.commands.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::ReportedStep;
    use crate::status::ExecutionOutcome;
    use InvocationState as S;

    fn tally(max_concurrency: &str, error_budget: u32, pending: u32) -> Tally {
        let mut counts = StateCounts::default();
        counts.add(S::Pending, pending);
        Tally {
            counts,
            error_budget,
            cancel_requested: false,
            max_concurrency: max_concurrency.into(),
            rollout: Rollout::default(),
            loaded_state: CommandState::Pending,
        }
    }

    #[test]
    fn record_table() {
        // (from, to, released, acked +, settled +)
        let table = [
            (S::Pending, S::InProgress, true, 1, 0),
            (S::Pending, S::Delayed, true, 1, 0),
            (S::Pending, S::Cancelled, true, 1, 1),
            (S::Pending, S::Terminated, false, 0, 0),
            (S::Delayed, S::InProgress, true, 0, 0),
            (S::InProgress, S::Success, true, 0, 1),
            (S::InProgress, S::Cancelling, true, 0, 0),
            (S::Cancelling, S::Cancelled, true, 0, 1),
            (S::Delayed, S::DeliveryTimedOut, true, 0, 1),
        ];
        for (from, to, released, acked, settled) in table {
            let mut t = tally("50", 0, 0);
            t.counts.add(from, 1);
            t.record(from, to, released);
            assert_eq!(t.counts.get(from), 0, "{from:?}->{to:?}");
            assert_eq!(t.counts.get(to), 1, "{from:?}->{to:?}");
            assert_eq!(t.rollout.acked, acked, "{from:?}->{to:?}");
            assert_eq!(t.rollout.settled, settled, "{from:?}->{to:?}");
        }
    }

    #[test]
    fn next_step_table() {
        let mut fresh = tally("50", 0, 5);
        assert_eq!(
            fresh.next_step(),
            RolloutStep::Release(1),
            "ramp starts at one"
        );
        assert_eq!(fresh.rollout.total, 5);
        assert_eq!(fresh.rollout.concurrency, 50, "a count is taken as sent");

        let mut waiting = tally("50", 0, 5);
        waiting.released(1);
        assert_eq!(waiting.next_step(), RolloutStep::Hold, "waits for the ack");

        let mut acked = tally("50", 0, 4);
        acked.counts.add(S::InProgress, 1);
        acked.released(1);
        acked.rollout.acked = 1;
        assert_eq!(acked.next_step(), RolloutStep::Release(2));

        let mut percent = tally("10%", 0, 15);
        assert_eq!(percent.next_step(), RolloutStep::Release(1));
        assert_eq!(percent.rollout.concurrency, 2, "10% of 15 rounds up");

        let mut failed = tally("50", 0, 3);
        failed.counts.add(S::Failed, 1);
        assert_eq!(failed.next_step(), RolloutStep::TerminateUndelivered);

        let mut within = tally("50", 1, 3);
        within.counts.add(S::Failed, 1);
        assert_ne!(within.next_step(), RolloutStep::TerminateUndelivered);

        let mut cancelled = tally("50", 0, 3);
        cancelled.counts.add(S::Failed, 1);
        cancelled.cancel_requested = true;
        assert_eq!(
            cancelled.next_step(),
            RolloutStep::Hold,
            "a cancel stops the rollout"
        );

        let mut all_out = tally("50", 0, 0);
        all_out.counts.add(S::Success, 3);
        all_out.released(3);
        all_out.rollout.acked = 3;
        all_out.rollout.settled = 3;
        assert_eq!(all_out.next_step(), RolloutStep::Hold);
    }

    #[test]
    fn reconcile_table() {
        use HeldAction as A;
        // (state, listed, delivered on this session, cancel sent, action)
        let table = [
            (S::InProgress, true, true, false, A::Keep),
            (S::InProgress, true, false, false, A::Keep),
            (S::InProgress, false, true, false, A::Resend),
            (S::InProgress, false, false, false, A::Lose),
            (S::Cancelling, false, true, false, A::Lose),
            (S::Cancelling, false, false, true, A::Lose),
            (S::Cancelling, true, true, false, A::SendCancel),
            (S::Cancelling, true, false, true, A::Keep),
        ];
        for (state, listed, same_session, cancel_sent, want) in table {
            assert_eq!(
                reconcile_held(state, listed, same_session, cancel_sent),
                want,
                "{state:?} listed={listed} same_session={same_session} cancel_sent={cancel_sent}"
            );
        }
    }

    fn id(n: u32) -> InstanceId {
        InstanceId::parse(&format!("mi-{n:017x}")).expect("id")
    }

    #[test]
    fn cancel_scope_table() {
        let a = id(1).to_string();
        let b = id(2).to_string();
        let nodes = [a.as_str(), b.as_str()];
        let all = cancel_scope(&nodes, None).expect("all");
        assert_eq!(all.targets, vec![0, 1]);
        assert!(all.whole_command);

        let one = cancel_scope(&nodes, Some(&[id(2)])).expect("one");
        assert_eq!(one.targets, vec![1]);
        assert!(!one.whole_command);

        let both = cancel_scope(&nodes, Some(&[id(2), id(1), id(2)])).expect("both");
        assert_eq!(both.targets, vec![1, 0], "each once, in the order asked");
        assert!(both.whole_command, "naming every node is the whole command");

        match cancel_scope(&nodes, Some(&[id(3)])) {
            Err(CoreError::UnknownInstance(n)) => assert_eq!(n, id(3).to_string()),
            other => panic!("expected UnknownInstance, got {other:?}"),
        }
        let none = cancel_scope(&[], None).expect("empty");
        assert!(none.targets.is_empty() && none.whole_command);
    }

    #[test]
    fn report_times_date_steps_from_the_end() {
        let report = Report {
            command_id: CommandId::generate(),
            outcome: ExecutionOutcome::Success,
            response_code: 0,
            elapsed_ms: 3_000,
            held_ms: 1_000,
            steps: vec![ReportedStep {
                name: "s".into(),
                status: "Success".into(),
                exit_code: 0,
                start_offset_ms: 500,
                duration_ms: 2_000,
                stdout: "out".into(),
                stderr: String::new(),
                stdout_truncated: false,
                stderr_truncated: false,
            }],
        };
        let t = report_times(&report, 10_000, Some(2_000));
        assert_eq!((t.started_at, t.ended_at), (6_000, 9_000));
        assert_eq!((t.steps[0].started_at, t.steps[0].ended_at), (6_500, 8_500));
        assert_eq!(t.steps[0].stdout, "out");
        let late = report_times(
            &Report {
                elapsed_ms: -4,
                ..report
            },
            10_000,
            None,
        );
        assert_eq!(
            late.started_at, late.ended_at,
            "a negative elapsed time counts as 0"
        );
    }

    #[test]
    fn effects_wake_each_node_once_and_cancelling_wakes() {
        let mut e = Effects::default();
        e.wake(id(1));
        e.wake(id(1));
        e.invocation_changed(InvocationChange {
            command_id: CommandId::generate(),
            instance_id: id(2),
            from: S::InProgress,
            to: S::Cancelling,
        });
        e.invocation_changed(InvocationChange {
            command_id: CommandId::generate(),
            instance_id: id(3),
            from: S::InProgress,
            to: S::Success,
        });
        let e = e.settled();
        assert_eq!(e.wake, vec![id(1), id(2)]);
        assert_eq!(e.invocations.len(), 2);
        let cmd = CommandId::generate();
        let mut e = e;
        e.command_changed(cmd.clone(), CommandState::Pending, CommandState::Pending);
        assert!(e.commands.is_empty(), "no change, no record");
        e.command_changed(cmd, CommandState::Pending, CommandState::InProgress);
        assert_eq!(e.commands.len(), 1);
        assert_eq!(e.without_wake(&id(1)).wake, vec![id(2)]);
    }
}
