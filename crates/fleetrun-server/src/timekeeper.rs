//! Server-owned clocks: expiry of undelivered invocations (ExpiresAfter → DeliveryTimedOut), work
//! for unreachable nodes (→ Delayed), and the optional history retention. Deadlines live in the store, so a restart loses none of them.

use std::time::Duration;

use fleetrun_core::clock::now_millis;

use crate::AppState;

/// The reachability pass: work released to a node whose channel is down (no poll within the ping
/// timeout, or a goodbye since its last poll: `fleetrun_core::node::Node::reachable`) waits as
/// Delayed until it polls again. Run every tick, and at once when an agent says goodbye.
pub(crate) async fn mark_unreachable(
    state: &AppState,
    now: fleetrun_core::clock::Millis,
) -> Result<(), fleetrun_core::CoreError> {
    let effects = state
        .store
        .mark_unreachable(now - state.ping_timeout_ms(), now)
        .await?;
    state.apply(&effects);
    Ok(())
}

pub async fn run(state: AppState) {
    let mut tick = tokio::time::interval(state.config.tick);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_purge = tokio::time::Instant::now() - Duration::from_secs(3600);
    loop {
        tick.tick().await;
        let now = now_millis();
        match state.store.expire_due(now).await {
            Ok(effects) if effects.is_empty() => {}
            Ok(effects) => {
                tracing::info!(
                    invocations = effects.invocations.len(),
                    "delivery timed out"
                );
                state.apply(&effects);
            }
            Err(e) => tracing::warn!(error = %e, "expiry pass failed"),
        }
        if let Err(e) = mark_unreachable(&state, now).await {
            tracing::warn!(error = %e, "reachability pass failed");
        }
        if let Some(retention) = state.config.retention {
            if last_purge.elapsed() >= Duration::from_secs(60) {
                last_purge = tokio::time::Instant::now();
                let before = now - retention.as_millis() as i64;
                match state.store.purge_before(before).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(commands = n, "retention removed old commands"),
                    Err(e) => tracing::warn!(error = %e, "retention pass failed"),
                }
            }
        }
    }
}
