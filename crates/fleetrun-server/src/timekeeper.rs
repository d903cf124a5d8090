//! Server-owned clocks: expiry of undelivered invocations (ExpiresAfter → DeliveryTimedOut) and the
//! optional history retention. Deadlines live in the store, so a restart loses none of them.

use std::time::Duration;

use fleetrun_core::clock::now_millis;

use crate::AppState;

pub async fn run(state: AppState) {
    let mut tick = tokio::time::interval(state.config.tick);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_purge = tokio::time::Instant::now() - Duration::from_secs(3600);
    let ping_timeout = state.ping_timeout_ms();
    loop {
        tick.tick().await;
        let now = now_millis();
        match state.store.expire_due(now).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(invocations = n, "delivery timed out"),
            Err(e) => tracing::warn!(error = %e, "expiry pass failed"),
        }
        // Work released to a node whose channel is down waits as Delayed until it polls again.
        match state.store.mark_unreachable(now - ping_timeout, now).await {
            Ok(wake) => {
                for node in &wake {
                    state.notifier.wake(node.as_str());
                }
            }
            Err(e) => tracing::warn!(error = %e, "reachability pass failed"),
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
