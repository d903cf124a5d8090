//! The encoded series: names, labels, counts, and the agent gauges' bookkeeping.

use std::time::Duration;

use axum::http::HeaderMap;
use fleetrun_core::status::InvocationState;

use super::*;

/// The value of the sample line `name{labels} value` in `text`, if present.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn series_are_named_with_prefix_and_units() {
    let m = Metrics::new(Duration::from_secs(60));
    m.api_request("SendCommand", NO_ERROR, Duration::from_millis(3));
    m.api_request("SendCommand", "InvalidDocument", Duration::from_millis(1));
    m.api_request("SendCommand", NO_ERROR, Duration::from_millis(2));
    m.store_call("claim", Duration::from_micros(300));
    let text = m.encode().expect("encodes");
    assert_eq!(
        sample(
            &text,
            r#"fleetrun_api_requests_total{op="SendCommand",code="none"}"#
        ),
        Some(2.0)
    );
    assert_eq!(
        sample(
            &text,
            r#"fleetrun_api_requests_total{op="SendCommand",code="InvalidDocument"}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &text,
            r#"fleetrun_api_request_duration_seconds_count{op="SendCommand"}"#
        ),
        Some(3.0)
    );
    // 1 ms and 2 ms are under 2.5 ms; 3 ms is not.
    assert_eq!(
        sample(
            &text,
            r#"fleetrun_api_request_duration_seconds_bucket{le="0.0025",op="SendCommand"}"#
        ),
        Some(2.0)
    );
    assert_eq!(
        sample(
            &text,
            r#"fleetrun_store_call_duration_seconds_bucket{le="0.0005",method="claim"}"#
        ),
        Some(1.0)
    );
    for name in [
        "# TYPE fleetrun_dispatch_latency_seconds histogram",
        "# UNIT fleetrun_dispatch_latency_seconds seconds",
        "# TYPE fleetrun_agents_connected gauge",
        "# TYPE fleetrun_agent_polls_held gauge",
        "# TYPE fleetrun_notification_outbox_depth gauge",
        "# TYPE fleetrun_s3_upload_queue_depth gauge",
        "# TYPE fleetrun_invocations_entered counter",
    ] {
        assert!(text.contains(name), "{name} missing from\n{text}");
    }
    assert!(text.ends_with("# EOF\n"));
}

#[test]
fn every_invocation_state_is_present_from_the_start() {
    let m = Metrics::new(Duration::from_secs(60));
    m.invocations_entered(InvocationState::Pending, 3);
    m.invocation_entered(InvocationState::Success);
    let text = m.encode().expect("encodes");
    for state in InvocationState::ALL {
        let expected = match state {
            InvocationState::Pending => 3.0,
            InvocationState::Success => 1.0,
            _ => 0.0,
        };
        let series = format!(
            r#"fleetrun_invocations_entered_total{{status="{}"}}"#,
            state.as_str()
        );
        assert_eq!(sample(&text, &series), Some(expected), "{series}");
    }
}

#[test]
fn dispatch_latency_is_measured_from_the_request() {
    let m = Metrics::new(Duration::from_secs(60));
    m.delivered(1_000, 1_040);
    m.delivered(1_000, 8_000);
    // A clock step back never makes a negative latency.
    m.delivered(5_000, 4_000);
    let text = m.encode().expect("encodes");
    assert_eq!(
        sample(&text, "fleetrun_dispatch_latency_seconds_count"),
        Some(3.0)
    );
    assert_eq!(
        sample(
            &text,
            r#"fleetrun_dispatch_latency_seconds_bucket{le="0.05"}"#
        ),
        Some(2.0)
    );
    assert_eq!(
        sample(&text, "fleetrun_dispatch_latency_seconds_sum"),
        Some(7.04)
    );
}

#[test]
fn agents_count_until_the_ping_timeout_or_their_goodbye() {
    let m = Metrics::new(Duration::from_secs(60));
    let start = std::time::Instant::now();
    m.agents.polled("mi-00000000000000001", start);
    m.agents.polled("mi-00000000000000002", start);
    m.agents.polled("mi-00000000000000001", start);
    let text = m.encode_at(start).expect("encodes");
    assert_eq!(sample(&text, "fleetrun_agents_connected"), Some(2.0));
    m.agent_left("mi-00000000000000002");
    let later = start + Duration::from_secs(30);
    m.agents.polled("mi-00000000000000003", later);
    let text = m.encode_at(later).expect("encodes");
    assert_eq!(sample(&text, "fleetrun_agents_connected"), Some(2.0));
    // 61 s after its last poll, the first is gone; the third polled 31 s ago.
    let text = m
        .encode_at(start + Duration::from_secs(61))
        .expect("encodes");
    assert_eq!(sample(&text, "fleetrun_agents_connected"), Some(1.0));
    // No node id ever appears in the output.
    assert!(!text.contains("mi-"));
}

#[test]
fn polls_held_count_until_dropped() {
    let m = Metrics::new(Duration::from_secs(60));
    let a = m.poll_held();
    let b = m.poll_held();
    assert_eq!(
        sample(&m.encode().expect("encodes"), "fleetrun_agent_polls_held"),
        Some(2.0)
    );
    drop(a);
    drop(b);
    assert_eq!(
        sample(&m.encode().expect("encodes"), "fleetrun_agent_polls_held"),
        Some(0.0)
    );
}

#[test]
fn the_token_is_checked() {
    let access = Access::Token("s3cret-token".into());
    let mut headers = HeaderMap::new();
    assert!(!allowed(&access, &headers));
    headers.insert("authorization", "Bearer wrong".parse().expect("header"));
    assert!(!allowed(&access, &headers));
    headers.insert(
        "authorization",
        "Bearer s3cret-token".parse().expect("header"),
    );
    assert!(allowed(&access, &headers));
    assert!(allowed(&Access::Public, &HeaderMap::new()));
}
