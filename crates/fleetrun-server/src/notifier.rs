//! Wakes a node's long poll the moment there is work for it.
//!
//! One `Notify` per node, created on first use. `notify_one` stores a permit when nobody waits, so a
//! wake-up that lands between a poll's "nothing to do" and its wait is not lost. Other replicas'
//! wake-ups arrive here through the store's wake bus (`effects::ReplicaWakes`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

#[derive(Default, Clone)]
pub struct Notifier {
    nodes: Arc<Mutex<HashMap<String, Arc<Notify>>>>,
}

impl Notifier {
    pub fn handle(&self, node: &str) -> Arc<Notify> {
        let mut map = self.nodes.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(node.to_string()).or_default().clone()
    }

    pub fn wake(&self, node: &str) {
        self.handle(node).notify_one();
    }

    /// Wakes every node's poll once (wake-ups from other replicas may have been missed).
    pub fn wake_all(&self) {
        let map = self.nodes.lock().unwrap_or_else(|p| p.into_inner());
        for notify in map.values() {
            notify.notify_one();
        }
    }
}
