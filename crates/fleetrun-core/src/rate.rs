//! MaxConcurrency / MaxErrors: parsing the AWS string forms and resolving them against a target count.
//!
//! choice (AWS documents no rounding): a percentage of MaxConcurrency rounds **up** and is at least 1,
//! so `10%` of 15 nodes runs 2 at a time; a percentage of MaxErrors rounds **down**, so `10%` of 15
//! tolerates 1 error and fails on the 2nd — the conservative reading of both limits.

/// A number or a percentage, as sent in MaxConcurrency / MaxErrors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    Count(u32),
    Percent(u32),
}

impl Limit {
    /// Parses `"10"` or `"10%"`. Pattern checks live in the wire validation; this only interprets.
    pub fn parse(s: &str) -> Option<Self> {
        if let Some(p) = s.strip_suffix('%') {
            let n: u32 = p.parse().ok()?;
            (n <= 100).then_some(Self::Percent(n))
        } else {
            s.parse().ok().map(Self::Count)
        }
    }

    /// Concurrency for `targets` nodes: percentages round up, never below 1.
    pub fn concurrency(self, targets: u32) -> u32 {
        let n = match self {
            Self::Count(n) => n,
            Self::Percent(p) => (u64::from(targets) * u64::from(p)).div_ceil(100) as u32,
        };
        n.max(1)
    }

    /// Error budget for `targets` nodes: percentages round down.
    pub fn error_budget(self, targets: u32) -> u32 {
        match self {
            Self::Count(n) => n,
            Self::Percent(p) => (u64::from(targets) * u64::from(p) / 100) as u32,
        }
    }
}

/// How far a command's rollout has got, as the dispatcher sees it.
///
/// The AWS ramp (fact sheet §7.1): one node first; once it is acknowledged, two more; then the window
/// keeps doubling (1, 3, 7, 15, …) until MaxConcurrency bounds the invocations in flight.
/// choice: an invocation counts as acknowledged once it left Pending for any reason (delivered,
/// Delayed because its node is unreachable, cancelled, expired), so one offline node cannot stall
/// the rollout of the others.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rollout {
    /// Invocations of the command.
    pub total: u32,
    /// MaxConcurrency resolved against `total`.
    pub concurrency: u32,
    /// Invocations released to their nodes so far.
    pub released: u32,
    /// Released invocations that have left Pending.
    pub acked: u32,
    /// Released invocations that reached a terminal state.
    pub settled: u32,
}

impl Rollout {
    /// The ramp's bound on released invocations given `acked`: 1, then 2·acked + 1.
    pub fn window(acked: u32) -> u32 {
        if acked == 0 {
            1
        } else {
            acked.saturating_mul(2).saturating_add(1)
        }
    }

    /// Invocations still to release.
    pub fn unreleased(&self) -> u32 {
        self.total.saturating_sub(self.released)
    }

    /// How many more invocations may be released now.
    pub fn releasable(&self) -> u32 {
        let in_flight = self.released.saturating_sub(self.settled);
        let by_ramp = Self::window(self.acked)
            .min(self.total)
            .saturating_sub(self.released);
        let by_concurrency = self.concurrency.saturating_sub(in_flight);
        by_ramp.min(by_concurrency).min(self.unreleased())
    }
}

/// MaxErrors exceeded: stop sending (errors must *exceed* the budget, fact sheet §7.2).
pub fn error_budget_exceeded(errors: u32, budget: u32) -> bool {
    errors > budget
}

/// Default MaxConcurrency echoed when the caller sent none.
pub const DEFAULT_MAX_CONCURRENCY: &str = "50";
/// Default MaxErrors echoed when the caller sent none.
pub const DEFAULT_MAX_ERRORS: &str = "0";

#[cfg(test)]
mod tests {
    use super::*;

    /// Simulates instant deliveries: each step acknowledges everything released so far.
    fn ramp(total: u32, concurrency: u32, finish: bool) -> Vec<u32> {
        let mut r = Rollout {
            total,
            concurrency,
            ..Default::default()
        };
        let mut batches = Vec::new();
        while r.released < total {
            let n = r.releasable();
            assert!(n > 0, "stalled at {r:?}");
            r.released += n;
            batches.push(n);
            r.acked = r.released;
            if finish {
                r.settled = r.released;
            }
        }
        batches
    }

    #[test]
    fn ramp_is_one_then_two_then_doubling() {
        // Fast invocations that finish at once: 1, 2, 4, 8, … capped by nothing but the ramp.
        assert_eq!(ramp(20, 50, true), vec![1, 2, 4, 8, 5]);
        // Concurrency 5 with fast invocations: the ramp, then batches of at most 5.
        assert_eq!(ramp(20, 5, true), vec![1, 2, 4, 5, 5, 3]);
    }

    #[test]
    fn concurrency_bounds_in_flight() {
        let r = Rollout {
            total: 20,
            concurrency: 5,
            released: 5,
            acked: 5,
            settled: 0,
        };
        assert_eq!(r.releasable(), 0);
        let r = Rollout { settled: 2, ..r };
        assert_eq!(r.releasable(), 2);
        let first = Rollout {
            total: 20,
            concurrency: 5,
            ..Default::default()
        };
        assert_eq!(first.releasable(), 1);
        let waiting = Rollout {
            released: 1,
            ..first
        };
        assert_eq!(
            waiting.releasable(),
            0,
            "second batch waits for the first ack"
        );
        let acked = Rollout {
            acked: 1,
            ..waiting
        };
        assert_eq!(acked.releasable(), 2);
    }

    #[test]
    fn error_budget_is_exceeded_only_above_it() {
        assert!(!error_budget_exceeded(0, 0));
        assert!(error_budget_exceeded(1, 0));
        assert!(!error_budget_exceeded(3, 3));
        assert!(error_budget_exceeded(4, 3));
    }

    #[test]
    fn parses_and_resolves() {
        assert_eq!(Limit::parse("50"), Some(Limit::Count(50)));
        assert_eq!(Limit::parse("10%"), Some(Limit::Percent(10)));
        assert_eq!(Limit::parse("x"), None);
        assert_eq!(Limit::Percent(10).concurrency(15), 2);
        assert_eq!(Limit::Percent(1).concurrency(5), 1);
        assert_eq!(Limit::Count(5).concurrency(3), 5);
        assert_eq!(Limit::Percent(10).error_budget(15), 1);
        assert_eq!(Limit::Percent(10).error_budget(50), 5);
        assert_eq!(Limit::Percent(0).error_budget(50), 0);
        assert_eq!(Limit::Count(0).error_budget(50), 0);
    }
}
