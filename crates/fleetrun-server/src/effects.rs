//! The one place where what a store call changed ([`Effects`]) is acted on, after its commit:
//! agents' long polls are woken here (on this replica at once, on the others through the store's
//! [`WakeBus`]), the invocation state counters are kept (`fleetrun_invocations_entered_total`:
//! every committed transition passes here, once) and the notification deliverer is rung
//! (ARCHITECTURE.md, "The lifecycle in core").

use std::sync::Arc;

use fleetrun_core::ids::InstanceId;
use fleetrun_core::lifecycle::Effects;
use fleetrun_core::store::{Wake, WakeBus};
use tokio::sync::mpsc;

use crate::notifier::Notifier;
use crate::AppState;

impl AppState {
    /// Acts on a committed store call's effects.
    pub(crate) fn apply(&self, effects: &Effects) {
        for node in &effects.wake {
            self.notifier.wake(node.as_str());
        }
        if let Some(replicas) = &self.replicas {
            replicas.publish(&effects.wake);
        }
        for change in &effects.invocations {
            self.metrics.invocation_entered(change.to);
        }
        for change in &effects.commands {
            tracing::debug!(command_id = %change.command_id, from = change.from.as_str(),
                to = change.to.as_str(), "command status changed");
        }
        // The store wrote any notices these changes produce; the deliverer sends them now.
        if !effects.invocations.is_empty() || !effects.commands.is_empty() {
            self.outbox.notify_one();
        }
    }
}

/// Wake-ups for the other replicas, handed to a task that publishes them in batches: everything
/// that piled up while one publish ran goes out in the next, so a burst of reports costs a few
/// NOTIFYs instead of one each, and no request waits for one.
#[derive(Clone)]
pub(crate) struct ReplicaWakes {
    queue: mpsc::UnboundedSender<InstanceId>,
}

/// Most nodes published in one call (several NOTIFY payloads).
const MAX_BATCH: usize = 4_096;

impl ReplicaWakes {
    /// Starts publishing through `bus`, and delivering the other replicas' wake-ups to `notifier`.
    pub(crate) fn start(bus: Arc<dyn WakeBus>, notifier: Notifier) -> ReplicaWakes {
        let local = notifier.clone();
        bus.subscribe(Arc::new(move |wake| match wake {
            Wake::Nodes(nodes) => {
                for node in &nodes {
                    local.wake(node.as_str());
                }
            }
            Wake::Everyone => local.wake_all(),
        }));
        let (queue, mut pending) = mpsc::unbounded_channel::<InstanceId>();
        tokio::spawn(async move {
            let mut batch = Vec::new();
            while pending.recv_many(&mut batch, MAX_BATCH).await > 0 {
                batch.sort_unstable_by(|a, b| a.as_str().cmp(b.as_str()));
                batch.dedup();
                if let Err(e) = bus.publish(&batch).await {
                    // The other replicas' polls still find the work when they next look (at the
                    // latest when their long poll times out).
                    tracing::warn!(error = %e, nodes = batch.len(),
                        "could not wake agents polling other replicas");
                }
                batch.clear();
            }
        });
        ReplicaWakes { queue }
    }

    fn publish(&self, nodes: &[InstanceId]) {
        for node in nodes {
            let _ = self.queue.send(node.clone());
        }
    }
}
