//! Throttling activation-code guesses. Every refused registration (unknown activation, wrong
//! code, or a code for an expired, deleted or used-up activation) counts as a failure; past the
//! limits below, registrations are answered `TooManyUpdates` (an SSM error name) without looking
//! at the code at all, until enough failures have aged out of their window. Successful
//! registrations count nothing.
//!
//! | limit | failures | window |
//! |---|---|---|
//! | per activation id | [`PER_ACTIVATION`] | [`PER_ACTIVATION_WINDOW`] |
//! | all registrations | [`GLOBAL`] | [`GLOBAL_WINDOW`] |
//!
//! So one activation can be guessed at most 10 times per 10 minutes, and all of them together
//! 100 times a minute (instead of the 2,400 a second measured before). Failures are counted when
//! the store has answered, so requests already in flight when a limit is reached are still
//! checked. Memory is bounded: at most [`TRACKED_IDS`] activation ids are followed (refusals of
//! unknown ids count only globally).

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// Failures one activation id may see in [`PER_ACTIVATION_WINDOW`].
pub const PER_ACTIVATION: usize = 10;
pub const PER_ACTIVATION_WINDOW: Duration = Duration::from_secs(600);
/// Failures all registrations together may see in [`GLOBAL_WINDOW`].
pub const GLOBAL: usize = 100;
pub const GLOBAL_WINDOW: Duration = Duration::from_secs(60);
/// Activation ids followed at once.
pub const TRACKED_IDS: usize = 10_000;

/// Recent registration failures.
#[derive(Default)]
pub(crate) struct RegistrationThrottle {
    per_id: HashMap<String, VecDeque<Instant>>,
    global: VecDeque<Instant>,
}

/// Which limit refused an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Limit {
    Activation,
    Global,
}

fn prune(times: &mut VecDeque<Instant>, window: Duration, now: Instant) {
    while times
        .front()
        .is_some_and(|t| now.duration_since(*t) >= window)
    {
        times.pop_front();
    }
}

impl RegistrationThrottle {
    /// Whether an attempt on `activation_id` may be checked now.
    pub(crate) fn check(&mut self, activation_id: &str, now: Instant) -> Result<(), Limit> {
        prune(&mut self.global, GLOBAL_WINDOW, now);
        if self.global.len() >= GLOBAL {
            return Err(Limit::Global);
        }
        if let Some(times) = self.per_id.get_mut(activation_id) {
            prune(times, PER_ACTIVATION_WINDOW, now);
            if times.len() >= PER_ACTIVATION {
                return Err(Limit::Activation);
            }
        }
        Ok(())
    }

    /// Counts a refused registration; `activation_id` is `None` for an id that does not exist.
    pub(crate) fn failed(&mut self, activation_id: Option<&str>, now: Instant) {
        self.global.push_back(now);
        if self.global.len() > GLOBAL {
            self.global.pop_front();
        }
        let Some(id) = activation_id else { return };
        if !self.per_id.contains_key(id) && self.per_id.len() >= TRACKED_IDS {
            self.per_id.retain(|_, times| {
                prune(times, PER_ACTIVATION_WINDOW, now);
                !times.is_empty()
            });
            if self.per_id.len() >= TRACKED_IDS {
                return;
            }
        }
        let times = self.per_id.entry(id.to_owned()).or_default();
        times.push_back(now);
        if times.len() > PER_ACTIVATION {
            times.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_activation_is_throttled_after_its_failures_until_they_age_out() {
        let mut t = RegistrationThrottle::default();
        let t0 = Instant::now();
        for _ in 0..PER_ACTIVATION {
            assert_eq!(t.check("a", t0), Ok(()));
            t.failed(Some("a"), t0);
        }
        assert_eq!(t.check("a", t0), Err(Limit::Activation));
        assert_eq!(t.check("b", t0), Ok(()), "other activations are unaffected");
        assert_eq!(
            t.check("a", t0 + PER_ACTIVATION_WINDOW - Duration::from_secs(1)),
            Err(Limit::Activation)
        );
        assert_eq!(t.check("a", t0 + PER_ACTIVATION_WINDOW), Ok(()));
    }

    #[test]
    fn failures_everywhere_throttle_everyone_for_a_minute() {
        let mut t = RegistrationThrottle::default();
        let t0 = Instant::now();
        for _ in 0..GLOBAL {
            t.failed(None, t0);
        }
        assert_eq!(t.check("fresh", t0), Err(Limit::Global));
        assert_eq!(t.check("fresh", t0 + GLOBAL_WINDOW), Ok(()));
        assert!(t.per_id.is_empty(), "unknown ids are not followed");
    }

    #[test]
    fn followed_ids_are_bounded() {
        let mut t = RegistrationThrottle::default();
        let t0 = Instant::now();
        for i in 0..TRACKED_IDS + 5 {
            t.failed(Some(&format!("id-{i}")), t0);
        }
        assert_eq!(t.per_id.len(), TRACKED_IDS);
        // Once the old ones age out, new ids are followed again.
        t.failed(Some("late"), t0 + PER_ACTIVATION_WINDOW);
        assert_eq!(t.per_id.len(), 1);
    }
}
