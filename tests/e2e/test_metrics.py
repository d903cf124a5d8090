"""Prometheus metrics and the health endpoints: a known workload (commands that succeed, commands
that fail, a refused request, an unknown operation, a CloudWatch Logs and an admin call), then
`/metrics` parsed by the Prometheus project's own OpenMetrics parser, every series checked present
and its counts checked against the workload.

The server is shared by the whole session, so every count is a difference between a scrape before
and a scrape after the workload. Counts only the workload can change in that window (requests,
invocations created, store inserts) must match exactly; transitions of other tests' leftovers (a
dead node's work expiring) may land in the window too, so those are checked as at least the
workload's.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
import uuid

import pytest
from botocore.exceptions import ClientError
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from conftest import DATABASES, REPO_ROOT, TEST_STORE, make_client, poll, psql, start_server

OPENMETRICS = "application/openmetrics-text"


def get(url: str, token: str | None = None) -> tuple[int, dict, str]:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            return r.status, {k.lower(): v for k, v in r.headers.items()}, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read().decode()


class Scrape:
    """One parsed /metrics answer: every sample by (name, labels)."""

    def __init__(self, text: str):
        self.families = {f.name: f for f in text_string_to_metric_families(text)}
        self.samples: dict[tuple[str, frozenset], float] = {}
        for family in self.families.values():
            for s in family.samples:
                self.samples[(s.name, frozenset(s.labels.items()))] = s.value

    def value(self, name: str, **labels: str) -> float:
        """The sample `name{labels}` (exactly these labels); 0 when the series is not there yet
        (a label combination is created on first use)."""
        return self.samples.get((name, frozenset(labels.items())), 0.0)


@pytest.fixture(scope="module")
def token(fleet) -> str:
    path = fleet.data_dir / "metrics-token"
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    return path.read_text().strip()


def scrape(fleet, token: str) -> Scrape:
    status, headers, text = get(f"{fleet.endpoint}/metrics", token)
    assert status == 200, text
    assert headers["content-type"].startswith(OPENMETRICS), headers
    return Scrape(text)


def test_health_endpoints(fleet):
    status, _, body = get(f"{fleet.endpoint}/healthz")
    assert (status, body) == (200, "ok")
    status, _, body = get(f"{fleet.endpoint}/readyz")
    assert (status, body) == (200, "ready")


def test_metrics_need_the_token(fleet, token):
    for presented in (None, "not-the-token", token + "x"):
        status, headers, body = get(f"{fleet.endpoint}/metrics", presented)
        assert status == 400, (presented, status, body)
        assert headers["x-amzn-errortype"] == "UnrecognizedClientException"
        assert json.loads(body)["__type"] == "UnrecognizedClientException"
        assert "fleetrun_" not in body


def logs_client(fleet):
    return make_client(fleet.endpoint, credentials=fleet.credentials, service="logs")


@pytest.fixture(scope="module")
def own_agents(fleet) -> list[str]:
    """Two agents of this module's own, so no other test's use of the shared ones matters."""
    return [a.instance_id for a in fleet.add_agents(2)]


def test_metrics_count_the_workload(fleet, node, own_agents, token):
    nodes = [node] + own_agents
    before = scrape(fleet, token)

    # The workload: 3 commands on 3 nodes that succeed, 2 on one node that fail, one SendCommand
    # refused (no such document), one unknown operation, one Logs and one admin call.
    ok = [fleet.send(nodes, ["echo metrics"])["CommandId"] for _ in range(3)]
    failing = [fleet.send([node], ["echo failing >&2; exit 3"])["CommandId"] for _ in range(2)]
    with pytest.raises(ClientError) as refused:
        fleet.ssm.send_command(
            InstanceIds=[node], DocumentName=f"NoSuchDocument-{uuid.uuid4().hex[:8]}",
            Parameters={"commands": ["true"]},
        )
    assert refused.value.response["Error"]["Code"] == "InvalidDocument"
    status, headers, _ = fleet.raw("AmazonSSM.NoSuchOperation", b"{}")
    assert (status, headers["x-amzn-errortype"]) == (400, "UnknownOperationException")
    logs_client(fleet).describe_log_groups(logGroupNamePrefix=f"none-{uuid.uuid4().hex[:8]}")
    status, _, _ = fleet.raw("FleetrunAdmin.ListAccessKeys", b"{}")
    assert status == 200
    for command_id in ok:
        assert fleet.wait_command(command_id, timeout=60)["Status"] == "Success"
    for command_id in failing:
        assert fleet.wait_command(command_id, timeout=60)["Status"] == "Failed"

    after = scrape(fleet, token)

    def delta(name: str, **labels: str) -> float:
        return after.value(name, **labels) - before.value(name, **labels)

    # API requests, by operation and code.
    requests = "fleetrun_api_requests_total"
    assert delta(requests, op="SendCommand", code="none") == 5
    assert delta(requests, op="SendCommand", code="InvalidDocument") == 1
    assert delta(requests, op="unknown", code="UnknownOperationException") == 1
    assert delta(requests, op="DescribeLogGroups", code="none") == 1
    assert delta(requests, op="ListAccessKeys", code="none") == 1
    assert delta(requests, op="ListCommands", code="none") >= len(ok) + len(failing)
    # Every label value is an operation served, or "unknown": never a client's text.
    assert not any("NoSuchOperation" in str(labels) for (_, labels) in after.samples)

    # Their latencies: one observation per request, in every bucket up to +Inf.
    seconds = "fleetrun_api_request_duration_seconds"
    assert delta(f"{seconds}_count", op="SendCommand") == 6
    assert delta(f"{seconds}_bucket", op="SendCommand", le="+Inf") == 6
    assert delta(f"{seconds}_count", op="unknown") == 1
    assert delta(f"{seconds}_sum", op="SendCommand") > 0

    # Invocations entering each state: 11 created Pending, each delivered (InProgress) and
    # finished: 9 Success, 2 Failed.
    entered = "fleetrun_invocations_entered_total"
    assert delta(entered, status="Pending") == 11
    assert delta(entered, status="InProgress") >= 11
    assert delta(entered, status="Success") >= 9
    assert delta(entered, status="Failed") >= 2
    assert after.families["fleetrun_invocations_entered"].type == "counter"
    for state in ("Pending", "InProgress", "Delayed", "Cancelling", "Success", "Failed",
                  "ExecutionTimedOut", "DeliveryTimedOut", "Cancelled", "Undeliverable",
                  "Terminated", "InvalidPlatform", "AccessDenied"):
        assert (entered, frozenset({("status", state)})) in after.samples, state

    # Dispatch latency: one observation per delivered invocation.
    dispatch = "fleetrun_dispatch_latency_seconds"
    assert after.families[dispatch].type == "histogram"
    assert delta(f"{dispatch}_count") >= 11
    assert delta(f"{dispatch}_bucket", le="+Inf") == delta(f"{dispatch}_count")
    # Polling agents get their work in well under a minute.
    assert delta(f"{dispatch}_bucket", le="60.0") >= 11

    # Store calls: SendCommand's one insert each (the refused one never reached the store),
    # and the agents' claims.
    store = "fleetrun_store_call_duration_seconds"
    assert delta(f"{store}_count", method="insert_command") == 5
    assert delta(f"{store}_count", method="claim") >= 11
    assert delta(f"{store}_count", method="finish") >= 11

    # Gauges: the three agents poll this server; the outbox and upload queue depths are read.
    assert after.value("fleetrun_agents_connected") >= 3
    for gauge in ("fleetrun_notification_outbox_depth", "fleetrun_s3_upload_queue_depth"):
        assert after.families[gauge].type == "gauge"
        assert after.value(gauge) >= 0

    # Idle agents hold their long polls most of the time.
    poll("a long poll held", lambda: scrape(fleet, token).value("fleetrun_agent_polls_held") >= 1,
         10)


def console_post(fleet, path: str, body: dict, headers: dict) -> tuple[int, dict, dict]:
    request = urllib.request.Request(
        f"{fleet.endpoint}{path}", data=json.dumps(body).encode(), method="POST",
        headers={"Content-Type": "application/json", **headers},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            return r.status, {k.lower(): v for k, v in r.headers.items()}, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, json.loads(e.read() or b"{}")


def test_console_calls_are_counted_with_the_api_calls(fleet, token):
    """The console runs the same operations through the same dispatch: same series."""
    status, head, who = console_post(fleet, "/console/session", {
        "AccessKeyId": fleet.credentials["AWS_ACCESS_KEY_ID"],
        "SecretAccessKey": fleet.credentials["AWS_SECRET_ACCESS_KEY"],
    }, {})
    assert status == 200, who
    session = {"Cookie": head["set-cookie"].split(";", 1)[0], "X-Fleetrun-Csrf": who["CsrfToken"]}
    before = scrape(fleet, token)
    for _ in range(2):
        status, _, body = console_post(fleet, "/console/api", {"MaxResults": 1},
                                       {**session, "X-Amz-Target": "AmazonSSM.ListCommands"})
        assert status == 200, body
    status, _, body = console_post(
        fleet, "/console/api",
        {"CommandId": str(uuid.uuid4()), "InstanceId": "mi-00000000000000000"},
        {**session, "X-Amz-Target": "AmazonSSM.GetCommandInvocation"},
    )
    assert (status, body["__type"]) == (400, "InvocationDoesNotExist"), body
    after = scrape(fleet, token)
    requests = "fleetrun_api_requests_total"

    def delta(**labels: str) -> float:
        return after.value(requests, **labels) - before.value(requests, **labels)

    assert delta(op="ListCommands", code="none") == 2
    assert delta(op="GetCommandInvocation", code="InvocationDoesNotExist") == 1


def test_no_node_or_command_ids_in_labels(fleet, node, token):
    command_id = fleet.run(node, ["true"])
    fleet.wait_invocation(command_id, node)
    _, _, text = get(f"{fleet.endpoint}/metrics", token)
    assert command_id not in text
    assert node not in text
    assert "mi-" not in text
    assert fleet.credentials["AWS_ACCESS_KEY_ID"] not in text


def test_the_grafana_dashboard_uses_served_series(fleet, token):
    """Every fleetrun series the sample dashboard queries is one the server exposes."""
    dashboard = json.loads((REPO_ROOT / "deploy" / "grafana" / "fleetrun.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    exprs += [v["definition"] for v in dashboard["templating"]["list"] if "definition" in v]
    used = {name for e in exprs for name in re.findall(r"\bfleetrun_\w+", e)}
    fleet.ssm.list_commands(MaxResults=1)  # so the API series exist when this test runs alone
    served = {name for (name, _) in scrape(fleet, token).samples}
    assert used, exprs
    assert used <= served, used - served
    for family in ("fleetrun_api_requests", "fleetrun_invocations_entered",
                   "fleetrun_dispatch_latency_seconds", "fleetrun_store_call_duration_seconds",
                   "fleetrun_agents_connected", "fleetrun_notification_outbox_depth",
                   "fleetrun_s3_upload_queue_depth"):
        assert any(name.startswith(family) for name in used), family


@pytest.mark.skipif(TEST_STORE != "postgres", reason="a store made unreachable: PostgreSQL only")
def test_readyz_follows_the_store(fleet, tmp_path):
    """/readyz is 503 while the database refuses connections and 200 again when it accepts them;
    /healthz and /metrics answer throughout."""
    data = tmp_path / "data"
    server = start_server(fleet.binary, data, tmp_path, "readyz-server", local_node=False)
    database = DATABASES[data.resolve()]
    token = (data / "metrics-token").read_text().strip()
    try:
        assert get(f"{server.endpoint}/readyz")[0] == 200
        psql(f"ALTER DATABASE {database} ALLOW_CONNECTIONS false")
        psql(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{database}'")
        poll("/readyz to answer 503", lambda: get(f"{server.endpoint}/readyz")[0] == 503, 30)
        status, headers, body = get(f"{server.endpoint}/readyz")
        assert status == 503, body
        assert json.loads(body)["__type"] == "ServiceUnavailable", body
        assert get(f"{server.endpoint}/healthz")[:3:2] == (200, "ok")
        assert get(f"{server.endpoint}/metrics", token)[0] == 200
        psql(f"ALTER DATABASE {database} ALLOW_CONNECTIONS true")
        poll("/readyz to answer 200", lambda: get(f"{server.endpoint}/readyz")[0] == 200, 60)
    finally:
        psql(f"ALTER DATABASE {database} ALLOW_CONNECTIONS true")
        server.proc.stop()
