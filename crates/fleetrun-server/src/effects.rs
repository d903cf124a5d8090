//! The one place where what a store call changed ([`Effects`]) is acted on, after its commit:
//! agents' long polls are woken here, and so later are other replicas, metrics and notifications
//! (ARCHITECTURE.md, "The lifecycle in core").

use fleetrun_core::lifecycle::Effects;

use crate::AppState;

impl AppState {
    /// Acts on a committed store call's effects.
    pub(crate) fn apply(&self, effects: &Effects) {
        for node in &effects.wake {
            self.notifier.wake(node.as_str());
        }
        for change in &effects.commands {
            tracing::debug!(command_id = %change.command_id, from = change.from.as_str(),
                to = change.to.as_str(), "command status changed");
        }
    }
}
