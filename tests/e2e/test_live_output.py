"""Live output: a command's stdout/stderr streamed while the script runs, readable as CloudWatch
Logs (the Logs_20140328 API on the same endpoint, signed for `logs`) and followed by `fleetrun tail`.

With `CloudWatchOutputConfig.CloudWatchOutputEnabled` the output lands in the log group given by
`CloudWatchLogGroupName`, else `/aws/ssm/<DocumentName>`, in the streams
`<CommandId>/<InstanceId>/aws-runShellScript/stdout|stderr` (a stream exists once it got data).
Each line is one event. `aws logs tail --follow` is CLI v2 only (the suite has v1): its follow loop
is reproduced here with boto3, as CLI v2's `FollowLogEventsGenerator` runs it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import threading
import time
import uuid
from collections import defaultdict

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from conftest import REGION, aws_cli, poll

DEFAULT_GROUP = "/aws/ssm/AWS-RunShellScript"
STEP = "aws-runShellScript"  # aws:runShellScript, `:` replaced by `-`
CLOUDWATCH = {"CloudWatchOutputEnabled": True}
EVENT_KEYS = {"eventId", "timestamp", "ingestionTime", "logStreamName", "message"}
# A script that prints a numbered line with its own wall-clock time (ms) once a second; the
# local node and agents run on this machine, so those times compare with ours.
LINES = 8


def ticking_script(lines: int) -> list[str]:
    return [f'for i in $(seq {lines}); do echo "$i $(date +%s%3N)"; sleep 1; done']


def stream_name(command_id: str, node: str, which: str = "stdout") -> str:
    return f"{command_id}/{node}/{STEP}/{which}"


def unique_group(what: str) -> str:
    return f"/fleetrun-e2e/{what}-{uuid.uuid4().hex[:12]}"


def now_ms() -> int:
    return int(time.time() * 1000)


# --------------------------------------------------------------------------- clients


def make_logs_client(fleet, parameter_validation: bool = True):
    """boto3 CloudWatch Logs client on the server's endpoint, signed as the SSM client is."""
    return boto3.client(
        "logs",
        endpoint_url=fleet.endpoint,
        region_name=REGION,
        aws_access_key_id=fleet.credentials["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=fleet.credentials["AWS_SECRET_ACCESS_KEY"],
        config=Config(
            retries={"max_attempts": 1},
            parameter_validation=parameter_validation,
            connect_timeout=5,
            read_timeout=60,
        ),
    )


@pytest.fixture(scope="module")
def logs(fleet):
    return make_logs_client(fleet)


@pytest.fixture(scope="module")
def logs_unchecked(fleet):
    """Without botocore's own checks, so the server's validation is what answers."""
    return make_logs_client(fleet, parameter_validation=False)


def aws_logs(fleet, *args: str) -> dict:
    """`aws logs <args> --endpoint-url <server>` (the suite's awscli v1), its JSON answer."""
    argv = [aws_cli(), "logs", *args, "--endpoint-url", fleet.endpoint, "--output", "json"]
    r = subprocess.run(argv, env=fleet.cli_env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, f"aws logs {' '.join(args)} failed ({r.returncode}):\n{r.stderr}"
    return json.loads(r.stdout) if r.stdout.strip() else {}


def error_code(call, **kwargs) -> tuple[str, int]:
    with pytest.raises(ClientError) as info:
        call(**kwargs)
    response = info.value.response
    assert response["Error"].get("Message"), response
    return response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"]


# --------------------------------------------------------------------------- waiting


def wait_stream_exists(logs, group: str, stream: str, timeout: float = 15.0) -> dict:
    """Polls DescribeLogStreams until `stream` is listed (the group may not exist yet)."""

    def listed():
        try:
            found = logs.describe_log_streams(logGroupName=group, logStreamNamePrefix=stream)
        except ClientError as e:
            if e.response["Error"]["Code"] == "ResourceNotFoundException":
                return None
            raise
        return next((s for s in found["logStreams"] if s["logStreamName"] == stream), None)

    return poll(f"log stream {group} {stream}", listed, timeout, interval=0.05)


def wait_stream_ends_with(logs, group: str, stream: str, last: str, timeout: float = 15.0) -> None:
    """Waits until the newest event of `stream` is `last` (output may be stored a little after
    the invocation's terminal report)."""

    def ended():
        try:
            got = logs.get_log_events(logGroupName=group, logStreamName=stream, limit=1)
        except ClientError as e:
            if e.response["Error"]["Code"] == "ResourceNotFoundException":
                return None
            raise
        return bool(got["events"]) and got["events"][-1]["message"] == last

    poll(f"{group} {stream} to end with {last!r}", ended, timeout)


def run_to_end(fleet, node: str, commands: list[str], timeout: float = 30.0, **kwargs) -> str:
    command_id = fleet.run(node, commands, **kwargs)
    fleet.wait_command(command_id, timeout=timeout)
    return command_id


# --------------------------------------------------------------------------- aws logs tail --follow


class CliTailFollow:
    """CLI v2's `aws logs tail GROUP --follow [--log-stream-names …]` loop (awscli
    customizations/logs/tail.py, FollowLogEventsGenerator): FilterLogEvents with interleaved=True
    and startTime = now - 10 min; follow nextToken at once; on a reply without one, drop the
    token, set startTime to the newest timestamp seen (inclusive) and sleep; skip events whose
    eventId was already seen at that newest timestamp. Each `poll()` is one round (until a reply
    without nextToken); the caller sleeps between rounds (0.5 s here instead of 5 s)."""

    MAX_CALLS_PER_ROUND = 200

    def __init__(self, logs, group: str, **filters):
        self.logs = logs
        self.kwargs = {
            "logGroupName": group,
            "interleaved": True,
            "startTime": now_ms() - 600_000,
            **filters,
        }
        self.ids_per_timestamp: defaultdict[int, set] = defaultdict(set)
        self.replies: list[dict] = []

    def poll(self) -> list[dict]:
        new = []
        for _ in range(self.MAX_CALLS_PER_ROUND):
            reply = self.logs.filter_log_events(**self.kwargs)
            self.replies.append(reply)
            for event in reply["events"]:
                if event["eventId"] not in self.ids_per_timestamp[event["timestamp"]]:
                    self.ids_per_timestamp[event["timestamp"]].add(event["eventId"])
                    new.append(event)
            if self.ids_per_timestamp:
                newest = max(self.ids_per_timestamp)
                self.ids_per_timestamp = defaultdict(
                    set, {newest: self.ids_per_timestamp[newest]}
                )
            if "nextToken" in reply:
                self.kwargs["nextToken"] = reply["nextToken"]
            else:
                if self.ids_per_timestamp:
                    self.kwargs["startTime"] = max(self.ids_per_timestamp)
                self.kwargs.pop("nextToken", None)
                return new
        raise AssertionError(
            f"FilterLogEvents kept returning nextToken for {self.MAX_CALLS_PER_ROUND} calls: "
            "a finished query must omit it (else `tail --follow` never sleeps)"
        )


def test_running_command_lines_reach_a_cli_style_follow_loop_as_they_are_printed(fleet, node, logs):
    command_id = fleet.run(node, ticking_script(LINES), CloudWatchOutputConfig=CLOUDWATCH)
    stream = stream_name(command_id, node)
    wait_stream_exists(logs, DEFAULT_GROUP, stream)
    follower = CliTailFollow(logs, DEFAULT_GROUP, logStreamNames=[stream])

    seen: list[tuple[dict, float, str]] = []  # (event, observed at in ms, invocation status then)
    deadline = time.monotonic() + LINES + 15
    while len(seen) < LINES and time.monotonic() < deadline:
        new = follower.poll()
        observed = now_ms()
        if new:
            status = fleet.invocation(command_id, node)["Status"]
            seen += [(event, observed, status) for event in new]
        time.sleep(0.5)

    done = fleet.wait_command(command_id)
    assert done["Status"] == "Success", done
    late = follower.poll()

    for event, _, _ in seen:
        assert EVENT_KEYS <= set(event), event
        assert isinstance(event["eventId"], str) and event["eventId"], event
        assert isinstance(event["timestamp"], int) and isinstance(event["ingestionTime"], int), event
        assert event["logStreamName"] == stream, event
        # One line per event, without its newline.
        assert re.fullmatch(r"\d+ \d{13}", event["message"]), event
    assert len({e["eventId"] for e, _, _ in seen}) == len(seen), "eventIds are unique"
    numbers = [int(e["message"].split()[0]) for e, _, _ in seen]
    assert numbers == list(range(1, LINES + 1)), f"in order, no duplicates, no gaps: {numbers}"

    printed = [int(e["message"].split()[1]) for e, _, _ in seen]
    last_printed = printed[-1]
    for (event, observed, status), at in zip(seen, printed):
        line = event["message"]
        # timestamp = ingestionTime = when the server received the line (it prints, then ships).
        assert event["ingestionTime"] == event["timestamp"], event
        assert -5 <= event["timestamp"] - at <= 1_000, (line, event["timestamp"] - at)
        assert observed - at <= 1_500, f"{line!r} seen {observed - at} ms after it was printed"
        if at != last_printed:
            assert observed < last_printed, f"{line!r} seen only after the last line was printed"
            assert status == "InProgress", (line, status)
    gaps = [(b - a) / 1000 for (_, a, _), (_, b, _) in zip(seen, seen[1:])]
    assert all(0.1 <= g <= 1.9 for g in gaps), f"seen about 1 s apart, as printed: {gaps}"
    assert late == [], f"nothing new, and nothing again, once the command has ended: {late}"


# --------------------------------------------------------------------------- a finished command, aws CLI

NEEDLE = "needle found"
SMALL = [f"line {i}" for i in range(1, 13)] + [NEEDLE]


@pytest.fixture(scope="module")
def finished(fleet, node, logs) -> dict:
    """One command printing 13 lines to stdout only, one printing to both streams; both ended."""
    quiet = run_to_end(
        fleet, node, ['for i in $(seq 12); do echo "line $i"; done', f'echo "{NEEDLE}"'],
        CloudWatchOutputConfig=CLOUDWATCH,
    )
    both = run_to_end(
        fleet, node, ["echo to-out", "echo to-err >&2"], CloudWatchOutputConfig=CLOUDWATCH
    )
    for command_id in (quiet, both):
        assert fleet.command(command_id)["Status"] == "Success"
    wait_stream_ends_with(logs, DEFAULT_GROUP, stream_name(quiet, node), NEEDLE)
    wait_stream_ends_with(logs, DEFAULT_GROUP, stream_name(both, node), "to-out")
    wait_stream_ends_with(logs, DEFAULT_GROUP, stream_name(both, node, "stderr"), "to-err")
    return {"quiet": quiet, "both": both}


def test_cli_filter_log_events_returns_every_line_of_the_stdout_stream(fleet, node, finished):
    stream = stream_name(finished["quiet"], node)
    got = aws_logs(
        fleet, "filter-log-events", "--log-group-name", DEFAULT_GROUP,
        "--log-stream-names", stream, "--interleaved",
    )
    assert [e["message"] for e in got["events"]] == SMALL
    for event in got["events"]:
        assert EVENT_KEYS <= set(event), event
        assert event["logStreamName"] == stream
    assert got.get("searchedLogStreams", []) == []
    assert "nextToken" not in got
    by_prefix = aws_logs(
        fleet, "filter-log-events", "--log-group-name", DEFAULT_GROUP,
        "--log-stream-name-prefix", finished["quiet"],
    )
    assert [e["message"] for e in by_prefix["events"]] == SMALL


def test_cli_filter_pattern_keeps_only_lines_holding_the_term(fleet, node, finished):
    got = aws_logs(
        fleet, "filter-log-events", "--log-group-name", DEFAULT_GROUP,
        "--log-stream-name-prefix", finished["quiet"], "--filter-pattern", "needle",
    )
    assert [e["message"] for e in got["events"]] == [NEEDLE]


def test_cli_get_log_events_returns_every_line_and_from_head_in_order(fleet, node, finished):
    stream = stream_name(finished["quiet"], node)
    head = aws_logs(
        fleet, "get-log-events", "--log-group-name", DEFAULT_GROUP,
        "--log-stream-name", stream, "--start-from-head",
    )
    assert [e["message"] for e in head["events"]] == SMALL
    for event in head["events"]:
        assert {"timestamp", "message", "ingestionTime"} <= set(event), event
    assert [e["timestamp"] for e in head["events"]] == sorted(e["timestamp"] for e in head["events"])
    assert head["nextForwardToken"] and head["nextBackwardToken"]
    tail = aws_logs(
        fleet, "get-log-events", "--log-group-name", DEFAULT_GROUP, "--log-stream-name", stream
    )
    assert [e["message"] for e in tail["events"]] == SMALL


def test_filter_start_time_is_inclusive(node, finished, logs):
    stream = stream_name(finished["quiet"], node)
    everything = logs.filter_log_events(logGroupName=DEFAULT_GROUP, logStreamNames=[stream])
    newest = max(e["timestamp"] for e in everything["events"])
    at_newest = logs.filter_log_events(
        logGroupName=DEFAULT_GROUP, logStreamNames=[stream], startTime=newest
    )["events"]
    assert NEEDLE in [e["message"] for e in at_newest]
    assert all(e["timestamp"] >= newest for e in at_newest), at_newest
    after = logs.filter_log_events(
        logGroupName=DEFAULT_GROUP, logStreamNames=[stream], startTime=newest + 1
    )
    assert after["events"] == []


def test_cli_describe_log_groups_lists_the_default_group(fleet, finished):
    got = aws_logs(fleet, "describe-log-groups", "--log-group-name-prefix", DEFAULT_GROUP)
    (group,) = [g for g in got["logGroups"] if g["logGroupName"] == DEFAULT_GROUP]
    assert {"logGroupName", "creationTime", "arn", "logGroupArn", "storedBytes"} <= set(group)
    assert isinstance(group["creationTime"], int) and group["creationTime"] <= now_ms()
    assert group["arn"].startswith(f"arn:aws:logs:{REGION}:"), group
    assert group["arn"].endswith(f":log-group:{DEFAULT_GROUP}:*"), group
    assert group["logGroupArn"] == group["arn"][: -len(":*")], group


def test_cli_describe_log_streams_lists_stdout_only_without_stderr_output(fleet, node, finished):
    got = aws_logs(
        fleet, "describe-log-streams", "--log-group-name", DEFAULT_GROUP,
        "--log-stream-name-prefix", finished["quiet"],
    )
    assert [s["logStreamName"] for s in got["logStreams"]] == [stream_name(finished["quiet"], node)]
    (stream,) = got["logStreams"]
    for key in ("creationTime", "firstEventTimestamp", "lastEventTimestamp", "lastIngestionTime",
                "arn", "storedBytes"):
        assert key in stream, (key, stream)
    assert stream["firstEventTimestamp"] <= stream["lastEventTimestamp"] <= stream["lastIngestionTime"]
    assert stream["arn"].endswith(
        f":log-group:{DEFAULT_GROUP}:log-stream:{stream['logStreamName']}"
    ), stream


def test_cli_describe_log_streams_lists_a_stderr_stream_when_the_script_wrote_to_stderr(
    fleet, node, finished, logs
):
    got = aws_logs(
        fleet, "describe-log-streams", "--log-group-name", DEFAULT_GROUP,
        "--log-stream-name-prefix", finished["both"],
    )
    # Ordered by name (the default): stderr < stdout.
    assert [s["logStreamName"] for s in got["logStreams"]] == [
        stream_name(finished["both"], node, "stderr"),
        stream_name(finished["both"], node, "stdout"),
    ]
    err = logs.get_log_events(
        logGroupName=DEFAULT_GROUP, logStreamName=stream_name(finished["both"], node, "stderr"),
        startFromHead=True,
    )
    assert [e["message"] for e in err["events"]] == ["to-err"]


# --------------------------------------------------------------------------- 100,000 lines

BIG = 100_000
BIG_LINES = [str(i) for i in range(1, BIG + 1)]


@pytest.fixture(scope="module")
def big(fleet, node, logs) -> str:
    """The stdout stream of a finished `seq 100000`."""
    command_id = run_to_end(fleet, node, [f"seq {BIG}"], timeout=60, CloudWatchOutputConfig=CLOUDWATCH)
    assert fleet.command(command_id)["Status"] == "Success"
    stream = stream_name(command_id, node)
    wait_stream_ends_with(logs, DEFAULT_GROUP, stream, str(BIG), timeout=30)
    return stream


def test_filter_paginator_pages_through_100000_lines_without_a_gap(logs, big):
    pages = list(
        logs.get_paginator("filter_log_events").paginate(
            logGroupName=DEFAULT_GROUP, logStreamNames=[big], interleaved=True,
            PaginationConfig={"PageSize": 7_000},
        )
    )
    assert all(len(p["events"]) <= 7_000 for p in pages), [len(p["events"]) for p in pages]
    events = [e for p in pages for e in p["events"]]
    assert [e["message"] for e in events] == BIG_LINES
    assert len({e["eventId"] for e in events}) == BIG
    stamps = [e["timestamp"] for e in events]
    assert stamps == sorted(stamps)
    assert "nextToken" not in pages[-1]
    assert all("nextToken" in p for p in pages[:-1])


def test_filter_with_a_limit_followed_by_next_token_returns_100000_lines_without_a_gap(logs, big):
    command_id = big.split("/", 1)[0]
    messages, replies = [], 0
    kwargs = {"logGroupName": DEFAULT_GROUP, "logStreamNamePrefix": command_id, "limit": 9_999}
    while True:
        reply = logs.filter_log_events(**kwargs)
        replies += 1
        assert len(reply["events"]) <= 9_999
        messages += [e["message"] for e in reply["events"]]
        if "nextToken" not in reply:
            break
        kwargs["nextToken"] = reply["nextToken"]
        assert replies < 200, "nextToken on every reply"
    assert messages == BIG_LINES
    assert replies >= 11  # 100,000 / 9,999


def test_get_log_events_from_head_by_forward_token_returns_100000_lines_in_order(logs, big):
    messages, token, calls = [], None, 0
    while True:
        kwargs = {"logGroupName": DEFAULT_GROUP, "logStreamName": big, "startFromHead": True}
        if token:
            kwargs["nextToken"] = token
        reply = logs.get_log_events(**kwargs)
        calls += 1
        assert reply["nextForwardToken"] and reply["nextBackwardToken"], reply.keys()
        messages += [e["message"] for e in reply["events"]]
        if reply["nextForwardToken"] == token:
            assert reply["events"] == [], "the end: no events, the same token back"
            break
        token = reply["nextForwardToken"]
        assert calls < 500, "the forward token never repeated"
    assert messages == BIG_LINES


def test_get_log_events_by_default_returns_the_newest_lines_and_goes_back_by_backward_token(
    logs, big
):
    newest = logs.get_log_events(logGroupName=DEFAULT_GROUP, logStreamName=big, limit=10)
    assert [e["message"] for e in newest["events"]] == BIG_LINES[-10:]
    before = logs.get_log_events(
        logGroupName=DEFAULT_GROUP, logStreamName=big, limit=10,
        nextToken=newest["nextBackwardToken"],
    )
    assert [e["message"] for e in before["events"]] == BIG_LINES[-20:-10]


# --------------------------------------------------------------------------- groups, opt-in, errors


def test_a_custom_log_group_name_receives_the_output_and_is_echoed(fleet, node, logs):
    group = unique_group("custom")
    config = {"CloudWatchOutputEnabled": True, "CloudWatchLogGroupName": group}
    command_id = run_to_end(fleet, node, ["echo custom"], CloudWatchOutputConfig=config)
    assert fleet.command(command_id)["CloudWatchOutputConfig"] == {
        "CloudWatchLogGroupName": group, "CloudWatchOutputEnabled": True,
    }
    stream = stream_name(command_id, node)
    wait_stream_ends_with(logs, group, stream, "custom")
    groups = logs.describe_log_groups(logGroupNamePrefix=group)["logGroups"]
    assert [g["logGroupName"] for g in groups] == [group]
    streams = logs.describe_log_streams(logGroupName=group)["logStreams"]
    assert [s["logStreamName"] for s in streams] == [stream]
    events = logs.filter_log_events(logGroupName=group)["events"]
    assert [e["message"] for e in events] == ["custom"]
    # Not in the document's default group as well.
    try:
        elsewhere = logs.describe_log_streams(
            logGroupName=DEFAULT_GROUP, logStreamNamePrefix=command_id
        )["logStreams"]
    except ClientError as e:
        assert e.response["Error"]["Code"] == "ResourceNotFoundException"
        elsewhere = []
    assert elsewhere == []


def test_a_command_without_cloudwatch_output_enabled_creates_no_log_group_or_stream(
    fleet, node, logs
):
    marker = f"off-{uuid.uuid4().hex}"
    named = unique_group("disabled")
    on = run_to_end(fleet, node, ["echo on"], CloudWatchOutputConfig=CLOUDWATCH)
    off = run_to_end(fleet, node, [f"echo {marker}"])
    named_off = run_to_end(
        fleet, node, [f"echo {marker}"],
        CloudWatchOutputConfig={"CloudWatchOutputEnabled": False, "CloudWatchLogGroupName": named},
    )
    wait_stream_ends_with(logs, DEFAULT_GROUP, stream_name(on, node), "on")  # the group exists
    for command_id in (off, named_off):
        assert logs.describe_log_streams(
            logGroupName=DEFAULT_GROUP, logStreamNamePrefix=command_id
        )["logStreams"] == []
        assert logs.filter_log_events(
            logGroupName=DEFAULT_GROUP, logStreamNamePrefix=command_id
        )["events"] == []
    assert logs.describe_log_groups(logGroupNamePrefix=named)["logGroups"] == []
    groups = [
        g["logGroupName"]
        for page in logs.get_paginator("describe_log_groups").paginate()
        for g in page["logGroups"]
    ]
    assert DEFAULT_GROUP in groups and named not in groups
    for group in groups:
        found = [
            e
            for page in logs.get_paginator("filter_log_events").paginate(
                logGroupName=group, filterPattern=marker
            )
            for e in page["events"]
        ]
        assert found == [], (group, found)


def test_describe_log_groups_and_streams_page_with_next_token(fleet, node, logs):
    prefix = unique_group("paged")
    names = [f"{prefix}/{i}" for i in range(3)]
    for name in names:
        run_to_end(
            fleet, node, ["echo out", "echo err >&2"],
            CloudWatchOutputConfig={"CloudWatchOutputEnabled": True, "CloudWatchLogGroupName": name},
        )
    for name in names:
        poll(f"streams in {name}", lambda: len(
            logs.describe_log_groups(logGroupNamePrefix=name)["logGroups"]
        ) == 1 and len(logs.describe_log_streams(logGroupName=name)["logStreams"]) == 2, 15)

    first = logs.describe_log_groups(logGroupNamePrefix=prefix, limit=2)
    assert [g["logGroupName"] for g in first["logGroups"]] == names[:2]
    assert first.get("nextToken")
    rest = logs.describe_log_groups(logGroupNamePrefix=prefix, limit=2, nextToken=first["nextToken"])
    assert [g["logGroupName"] for g in rest["logGroups"]] == names[2:]
    assert "nextToken" not in rest

    streams = logs.describe_log_streams(logGroupName=names[0])["logStreams"]
    by_name = [s["logStreamName"] for s in streams]
    assert [n.rsplit("/", 1)[1] for n in by_name] == ["stderr", "stdout"]
    one = logs.describe_log_streams(logGroupName=names[0], limit=1)
    assert [s["logStreamName"] for s in one["logStreams"]] == by_name[:1] and one.get("nextToken")
    two = logs.describe_log_streams(logGroupName=names[0], limit=1, nextToken=one["nextToken"])
    assert [s["logStreamName"] for s in two["logStreams"]] == by_name[1:]
    assert "nextToken" not in two
    descending = logs.describe_log_streams(
        logGroupName=names[0], orderBy="LogStreamName", descending=True
    )["logStreams"]
    assert [s["logStreamName"] for s in descending] == by_name[::-1]


def test_an_unknown_log_group_is_resource_not_found_for_filter_get_and_describe_streams(logs):
    group = unique_group("missing")
    assert error_code(logs.filter_log_events, logGroupName=group) == ("ResourceNotFoundException", 400)
    assert error_code(
        logs.get_log_events, logGroupName=group, logStreamName="x/y/z/stdout"
    ) == ("ResourceNotFoundException", 400)
    assert error_code(logs.describe_log_streams, logGroupName=group) == (
        "ResourceNotFoundException", 400,
    )


def test_an_unknown_stream_of_a_known_group_is_resource_not_found_for_get_log_events(
    fleet, node, logs
):
    command_id = run_to_end(fleet, node, ["echo known"], CloudWatchOutputConfig=CLOUDWATCH)
    wait_stream_ends_with(logs, DEFAULT_GROUP, stream_name(command_id, node), "known")
    assert error_code(
        logs.get_log_events, logGroupName=DEFAULT_GROUP,
        logStreamName=stream_name(command_id, node, "stderr"),  # nothing was written there
    ) == ("ResourceNotFoundException", 400)


def test_stream_names_with_a_stream_name_prefix_is_invalid_parameter(fleet, node, logs):
    command_id = run_to_end(fleet, node, ["echo both-filters"], CloudWatchOutputConfig=CLOUDWATCH)
    wait_stream_ends_with(logs, DEFAULT_GROUP, stream_name(command_id, node), "both-filters")
    assert error_code(
        logs.filter_log_events, logGroupName=DEFAULT_GROUP,
        logStreamNames=[stream_name(command_id, node)], logStreamNamePrefix=command_id,
    ) == ("InvalidParameterException", 400)


def test_paging_limits_out_of_range_are_invalid_parameter_and_the_edges_are_accepted(
    fleet, node, logs, logs_unchecked
):
    command_id = run_to_end(fleet, node, ["echo limits"], CloudWatchOutputConfig=CLOUDWATCH)
    stream = stream_name(command_id, node)
    wait_stream_ends_with(logs, DEFAULT_GROUP, stream, "limits")
    invalid = ("InvalidParameterException", 400)
    # botocore checks only minimums: these maximums reach the server.
    assert error_code(logs.filter_log_events, logGroupName=DEFAULT_GROUP, limit=10_001) == invalid
    assert error_code(
        logs.get_log_events, logGroupName=DEFAULT_GROUP, logStreamName=stream, limit=10_001
    ) == invalid
    assert error_code(logs.describe_log_groups, limit=51) == invalid
    assert error_code(logs.describe_log_streams, logGroupName=DEFAULT_GROUP, limit=51) == invalid
    # Below the minimum, with botocore's own check off.
    assert error_code(logs_unchecked.filter_log_events, logGroupName=DEFAULT_GROUP, limit=0) == invalid
    # The edges themselves are accepted.
    logs.filter_log_events(logGroupName=DEFAULT_GROUP, logStreamNames=[stream], limit=10_000)
    logs.get_log_events(logGroupName=DEFAULT_GROUP, logStreamName=stream, limit=10_000)
    logs.describe_log_groups(limit=50)
    logs.describe_log_streams(logGroupName=DEFAULT_GROUP, limit=50)


# --------------------------------------------------------------------------- fleetrun tail


class Tail:
    """`fleetrun tail COMMAND_ID …` as a child, each stdout/stderr line kept with when it came."""

    def __init__(self, fleet, command_id: str, *extra: str):
        argv = [
            fleet.binary, "tail", command_id, *extra,
            "--endpoint", fleet.endpoint, "--data-dir", str(fleet.data_dir), "--region", REGION,
        ]
        env = {
            k: v for k, v in os.environ.items()
            if not k.startswith("AWS_") and not k.startswith("FLEETRUN_")
        }
        env["NO_COLOR"] = "1"
        self.popen = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
        )
        self.stdout: list[tuple[int, str]] = []  # (ms when read, line)
        self.stderr: list[tuple[int, str]] = []
        self._threads = [
            threading.Thread(target=self._pump, args=(self.popen.stdout, self.stdout), daemon=True),
            threading.Thread(target=self._pump, args=(self.popen.stderr, self.stderr), daemon=True),
        ]
        for t in self._threads:
            t.start()

    @staticmethod
    def _pump(pipe, into: list) -> None:
        for raw in pipe:
            into.append((now_ms(), raw.decode("utf-8", "replace").rstrip("\n")))

    def wait(self, timeout: float = 30.0) -> int:
        try:
            code = self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(5)
            raise AssertionError(
                f"fleetrun tail still running after {timeout:.0f}s; "
                f"stdout={self.out_lines()!r} stderr={self.err_lines()!r}"
            )
        for t in self._threads:
            t.join(5)
        return code

    def out_lines(self) -> list[str]:
        return [line for _, line in self.stdout]

    def err_lines(self) -> list[str]:
        return [line for _, line in self.stderr]


TAIL_LINES = 6


def test_tail_follows_a_running_command_line_by_line_and_exits_0_on_success(fleet, node):
    # No CloudWatchOutputConfig: tail follows live output either way.
    command_id = fleet.run(node, ticking_script(TAIL_LINES))
    tail = Tail(fleet, command_id)
    code = tail.wait(TAIL_LINES + 20)
    exited = now_ms()

    assert code == 0, (tail.out_lines(), tail.err_lines())
    assert fleet.command(command_id)["Status"] == "Success"
    numbers = [int(line.split()[0]) for line in tail.out_lines()]
    assert numbers == list(range(1, TAIL_LINES + 1)), tail.out_lines()
    for read_at, line in tail.stdout:
        printed = int(line.split()[1])
        assert read_at - printed <= 2_500, f"{line!r} printed by tail {read_at - printed} ms late"
    first_read = tail.stdout[0][0]
    assert exited - first_read >= (TAIL_LINES - 3) * 1000, (
        f"the first line came {exited - first_read} ms before tail exited: not followed live"
    )
    assert tail.stdout[-1][0] - first_read >= (TAIL_LINES - 3) * 1000, "lines came progressively"


def test_tail_of_a_failing_command_splits_stdout_and_stderr_and_exits_1(fleet, node):
    command_id = fleet.run(
        node, ["echo out", "echo err >&2", "exit 3"], CloudWatchOutputConfig=CLOUDWATCH
    )
    tail = Tail(fleet, command_id)
    code = tail.wait()
    assert code == 1, (tail.out_lines(), tail.err_lines())
    assert fleet.command(command_id)["Status"] == "Failed"
    assert tail.out_lines() == ["out"]
    # The stream may go on with the agent's "failed to run commands: exit status 3".
    assert tail.err_lines()[:1] == ["err"], tail.err_lines()


def test_tail_prefixes_lines_with_the_instance_id_for_two_nodes_but_not_with_instance_id(
    fleet, two_agents
):
    nodes = [a.instance_id for a in two_agents]
    command = fleet.send(
        nodes, ['echo "hello $AWS_SSM_INSTANCE_ID"', 'echo "warn $AWS_SSM_INSTANCE_ID" >&2']
    )
    tail = Tail(fleet, command["CommandId"])
    assert tail.wait() == 0, (tail.out_lines(), tail.err_lines())
    assert sorted(tail.out_lines()) == sorted(f"{n}: hello {n}" for n in nodes)
    for n in nodes:
        assert f"{n}: warn {n}" in tail.err_lines(), tail.err_lines()

    # The command has ended: tail prints what there is and exits at once.
    one = Tail(fleet, command["CommandId"], "--instance-id", nodes[1])
    assert one.wait() == 0, (one.out_lines(), one.err_lines())
    assert one.out_lines() == [f"hello {nodes[1]}"]
    assert f"warn {nodes[1]}" in one.err_lines(), one.err_lines()
    assert not any(nodes[0] in line for line in one.err_lines()), one.err_lines()
