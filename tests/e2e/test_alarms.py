"""Alarms that stop a rollout: a command's AlarmConfiguration names an alarm whose state comes from
the CloudWatch alarm API subset (PutMetricAlarm, SetAlarmState, DescribeAlarms; AWS JSON 1.0, as
current botocore speaks it) or from an Alertmanager webhook. When the alarm is in ALARM, at send
time or while the command rolls out, invocations not yet delivered never run and end Cancelled,
running ones finish, and the command ends Cancelled with TriggeredAlarms = [{Name, State}]."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.request
import uuid

import pytest
from botocore.exceptions import ClientError

from conftest import aws_cli, make_client, poll


def unique(what: str) -> str:
    return f"{what}-{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="module")
def cloudwatch(fleet):
    return make_client(fleet.endpoint, credentials=fleet.credentials, service="cloudwatch")


@pytest.fixture(scope="module")
def six_nodes(fleet, node, two_agents) -> list[str]:
    extra = fleet.add_agents(3)
    return [node] + [a.instance_id for a in two_agents] + [a.instance_id for a in extra]


def aws_cloudwatch(fleet, *args: str) -> subprocess.CompletedProcess:
    argv = [aws_cli(), "cloudwatch", *args, "--endpoint-url", fleet.endpoint, "--output", "json"]
    return subprocess.run(argv, env=fleet.cli_env, capture_output=True, text=True, timeout=60)


def put_alarm(cloudwatch, name: str) -> None:
    cloudwatch.put_metric_alarm(
        AlarmName=name,
        MetricName="CPUUtilization",
        Namespace="AWS/EC2",
        Statistic="Average",
        Period=60,
        EvaluationPeriods=1,
        Threshold=90.0,
        ComparisonOperator="GreaterThanThreshold",
    )


def alertmanager_post(fleet, body: dict, token: str | None) -> tuple[int, dict]:
    request = urllib.request.Request(
        f"{fleet.endpoint}/alertmanager",
        data=json.dumps(body).encode(),
        headers={"content-type": "application/json"},
        method="POST",
    )
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            return r.status, json.loads(r.read() or b"{}")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def alert(name: str, status: str) -> dict:
    """An Alertmanager webhook payload (version 4) with one alert."""
    return {
        "version": "4",
        "status": status,
        "receiver": "fleetrun",
        "groupKey": "{}:{alertname=\"%s\"}" % name,
        "alerts": [
            {
                "status": status,
                "labels": {"alertname": name, "severity": "page"},
                "annotations": {"summary": f"{name} is {status}"},
                "startsAt": "2026-12-03T10:00:00Z",
                "endsAt": "0001-01-01T00:00:00Z",
            }
        ],
    }


def token(fleet) -> str:
    return (fleet.data_dir / "alertmanager-token").read_text()


def send_watched(fleet, nodes: list[str], alarm: str, commands: list[str], **extra) -> dict:
    return fleet.ssm.send_command(
        InstanceIds=nodes,
        DocumentName="AWS-RunShellScript",
        Parameters={"commands": commands},
        MaxConcurrency="1",
        AlarmConfiguration={"Alarms": [{"Name": alarm}], **extra},
    )["Command"]


def statuses(fleet, command_id: str) -> list[str]:
    invs = fleet.ssm.list_command_invocations(CommandId=command_id)["CommandInvocations"]
    return sorted(i["Status"] for i in invs)


def wait_successes(fleet, command_id: str, n: int) -> None:
    poll(
        f"{n} invocations of {command_id} to succeed",
        lambda: statuses(fleet, command_id).count("Success") >= n,
        60,
        interval=0.2,
    )


def assert_stopped(fleet, command_id: str, alarm: str, state: str = "ALARM") -> list[str]:
    final = fleet.wait_command(command_id, timeout=60)
    assert final["Status"] == "Cancelled", final
    assert final["TriggeredAlarms"] == [{"Name": alarm, "State": state}], final
    return statuses(fleet, command_id)


def test_set_alarm_state_through_the_aws_cli_stops_a_rollout_at_max_concurrency_1(
    fleet, six_nodes, cloudwatch
):
    name = unique("cpu-high")
    put_alarm(cloudwatch, name)
    sent = send_watched(fleet, six_nodes, name, ["sleep 1"])
    assert sent["TriggeredAlarms"] == [] and sent["AlarmConfiguration"]["Alarms"] == [{"Name": name}]
    wait_successes(fleet, sent["CommandId"], 1)
    r = aws_cloudwatch(
        fleet, "set-alarm-state", "--alarm-name", name, "--state-value", "ALARM",
        "--state-reason", "load test",
    )
    assert r.returncode == 0, r.stderr
    got = assert_stopped(fleet, sent["CommandId"], name)
    # One node at a time: the one running when the alarm fired finished, the rest never ran.
    assert 1 <= got.count("Success") <= 3, got
    assert got.count("Cancelled") >= 3, got
    assert set(got) <= {"Success", "Cancelled"}, got
    (listed,) = fleet.ssm.list_commands(CommandId=sent["CommandId"])["Commands"]
    assert listed["TriggeredAlarms"] == [{"Name": name, "State": "ALARM"}]
    described = json.loads(
        aws_cloudwatch(fleet, "describe-alarms", "--alarm-names", name).stdout
    )["MetricAlarms"]
    assert [(a["AlarmName"], a["StateValue"], a["StateReason"]) for a in described] == [
        (name, "ALARM", "load test")
    ]


def test_an_alertmanager_alert_firing_stops_a_rollout_and_resolving_it_sets_ok(
    fleet, six_nodes, cloudwatch
):
    name = unique("HighErrorRate")  # never declared: Alertmanager's alerts create their alarm
    status, _ = alertmanager_post(fleet, alert(name, "resolved"), token(fleet))
    assert status == 200
    sent = send_watched(fleet, six_nodes, name, ["sleep 1"])
    wait_successes(fleet, sent["CommandId"], 1)
    status, _ = alertmanager_post(fleet, alert(name, "firing"), token(fleet))
    assert status == 200
    got = assert_stopped(fleet, sent["CommandId"], name)
    assert got.count("Cancelled") >= 3, got
    (alarm,) = cloudwatch.describe_alarms(AlarmNames=[name])["MetricAlarms"]
    assert (alarm["StateValue"], alarm["StateReason"]) == ("ALARM", f"{name} is firing")
    alertmanager_post(fleet, alert(name, "resolved"), token(fleet))
    (alarm,) = cloudwatch.describe_alarms(AlarmNames=[name])["MetricAlarms"]
    assert alarm["StateValue"] == "OK"


def test_an_alertmanager_post_without_the_token_is_refused(fleet):
    name = unique("nope")
    status, body = alertmanager_post(fleet, alert(name, "firing"), None)
    assert status == 400 and body["__type"] == "UnrecognizedClientException", body
    status, body = alertmanager_post(fleet, alert(name, "firing"), "wrong")
    assert status == 400, body


def test_an_alarm_in_alarm_at_send_time_runs_nothing(fleet, six_nodes, cloudwatch):
    name = unique("already")
    put_alarm(cloudwatch, name)
    cloudwatch.set_alarm_state(AlarmName=name, StateValue="ALARM", StateReason="down")
    marker = unique("never")
    sent = send_watched(fleet, six_nodes[:3], name, [f"echo {marker}"])
    assert sent["TriggeredAlarms"] == [{"Name": name, "State": "ALARM"}], sent
    assert sent["Status"] == "Cancelled", sent
    assert assert_stopped(fleet, sent["CommandId"], name) == ["Cancelled"] * 3


def test_an_ok_alarm_lets_the_command_run(fleet, node, cloudwatch):
    name = unique("fine")
    put_alarm(cloudwatch, name)
    cloudwatch.set_alarm_state(AlarmName=name, StateValue="OK", StateReason="quiet")
    sent = send_watched(fleet, [node], name, ["true"])
    final = fleet.wait_command(sent["CommandId"])
    assert (final["Status"], final["TriggeredAlarms"]) == ("Success", [])


def test_an_alarm_that_cannot_be_read_follows_ignore_poll_alarm_failure(fleet, node):
    missing = unique("missing")
    stopped = send_watched(fleet, [node], missing, ["true"])
    assert stopped["TriggeredAlarms"] == [{"Name": missing, "State": "UNKNOWN"}]
    assert_stopped(fleet, stopped["CommandId"], missing, "UNKNOWN")
    runs = send_watched(fleet, [node], missing, ["true"], IgnorePollAlarmFailure=True)
    final = fleet.wait_command(runs["CommandId"])
    assert (final["Status"], final["TriggeredAlarms"]) == ("Success", [])


def test_the_alarm_api_answers_as_cloudwatch_does(fleet, cloudwatch):
    prefix = unique("page")
    for i in range(3):
        put_alarm(cloudwatch, f"{prefix}-{i}")
    first = cloudwatch.describe_alarms(AlarmNamePrefix=prefix, MaxRecords=2)
    assert [a["AlarmName"] for a in first["MetricAlarms"]] == [f"{prefix}-0", f"{prefix}-1"]
    assert all(a["StateValue"] == "INSUFFICIENT_DATA" for a in first["MetricAlarms"])
    assert first["MetricAlarms"][0]["Threshold"] == 90.0
    assert first["MetricAlarms"][0]["AlarmArn"].endswith(f":alarm:{prefix}-0")
    rest = cloudwatch.describe_alarms(AlarmNamePrefix=prefix, NextToken=first["NextToken"])
    assert [a["AlarmName"] for a in rest["MetricAlarms"]] == [f"{prefix}-2"]
    assert "NextToken" not in rest
    paged = [
        a["AlarmName"]
        for page in cloudwatch.get_paginator("describe_alarms").paginate(
            AlarmNamePrefix=prefix, PaginationConfig={"PageSize": 1}
        )
        for a in page["MetricAlarms"]
    ]
    assert paged == [f"{prefix}-{i}" for i in range(3)]
    assert cloudwatch.describe_alarms(AlarmNames=[unique("unknown")])["MetricAlarms"] == []
    assert cloudwatch.describe_alarms(AlarmNamePrefix=prefix, AlarmTypes=["CompositeAlarm"])[
        "MetricAlarms"
    ] == []

    with pytest.raises(ClientError) as info:
        cloudwatch.set_alarm_state(AlarmName=unique("ghost"), StateValue="ALARM", StateReason="x")
    assert info.value.response["Error"]["Code"] == "ResourceNotFound"
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    with pytest.raises(ClientError) as info:
        cloudwatch.set_alarm_state(
            AlarmName=f"{prefix}-0", StateValue="ALARM", StateReason="x", StateReasonData="{not json"
        )
    assert info.value.response["Error"]["Code"] == "InvalidFormat"
    # A redefinition keeps the state.
    cloudwatch.set_alarm_state(AlarmName=f"{prefix}-1", StateValue="ALARM", StateReason="x")
    put_alarm(cloudwatch, f"{prefix}-1")
    (alarm,) = cloudwatch.describe_alarms(AlarmNames=[f"{prefix}-1"])["MetricAlarms"]
    assert alarm["StateValue"] == "ALARM"
    firing = cloudwatch.describe_alarms(AlarmNamePrefix=prefix, StateValue="ALARM")
    assert [a["AlarmName"] for a in firing["MetricAlarms"]] == [f"{prefix}-1"]
