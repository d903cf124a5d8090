"""ListCommands / ListCommandInvocations through boto3: paging while commands arrive, every filter
key and value, and the per-invocation details.

The server is shared with other tests, so each assertion is about the commands this module created
("ours"), plus a property every returned row must have."""

from __future__ import annotations

import threading
from datetime import datetime, timezone

import pytest

from conftest import DOCUMENT, poll

BATCH = 120


def ms(dt: datetime) -> int:
    return round(dt.timestamp() * 1000)


def iso_ms(millis: int) -> str:
    dt = datetime.fromtimestamp(millis // 1000, timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{millis % 1000:03d}Z"


def f(key: str, value: str) -> dict:
    return {"key": key, "value": value}


def all_commands(ssm, **kwargs) -> list[dict]:
    pages = ssm.get_paginator("list_commands").paginate(**kwargs)
    return [c for page in pages for c in page["Commands"]]


def all_invocations(ssm, **kwargs) -> list[dict]:
    pages = ssm.get_paginator("list_command_invocations").paginate(**kwargs)
    return [i for page in pages for i in page["CommandInvocations"]]


# --------------------------------------------------------------------------- paging


@pytest.fixture(scope="module")
def pending_batch(fleet, stopped_node) -> list[str]:
    """BATCH commands, oldest first, that stay Pending (their node's agent is stopped)."""
    return [fleet.run(stopped_node, ["true"], Comment=f"batch {i}") for i in range(BATCH)]


def test_paginator_walks_every_command_once_newest_first_while_new_ones_arrive(
    fleet, stopped_node, pending_batch
):
    sent_during_walk: list[str] = []
    stop = threading.Event()
    sender = fleet.client()

    def keep_sending():
        while not stop.is_set():
            cid = sender.send_command(
                InstanceIds=[stopped_node],
                DocumentName=DOCUMENT,
                Parameters={"commands": ["true"]},
                Comment="sent during the walk",
            )["Command"]["CommandId"]
            sent_during_walk.append(cid)

    thread = threading.Thread(target=keep_sending, daemon=True)
    thread.start()
    seen: list[dict] = []
    pages = 0
    try:
        for page in fleet.ssm.get_paginator("list_commands").paginate(
            PaginationConfig={"PageSize": 7}
        ):
            pages += 1
            assert len(page["Commands"]) <= 7
            seen.extend(page["Commands"])
            # Make sure at least one new command lands between any two pages.
            already = len(sent_during_walk)
            poll("a command sent between pages", lambda: len(sent_during_walk) > already, 10, 0.005)
    finally:
        stop.set()
        thread.join(10)

    ids = [c["CommandId"] for c in seen]
    assert len(ids) == len(set(ids)), "a command was returned twice"
    missing = set(pending_batch) - set(ids)
    assert not missing, f"{len(missing)} of the original {BATCH} commands were never returned"
    ours_in_walk_order = [cid for cid in ids if cid in set(pending_batch)]
    assert ours_in_walk_order == list(reversed(pending_batch)), "not newest first"
    times = [c["RequestedDateTime"] for c in seen]
    assert times == sorted(times, reverse=True), "RequestedDateTime is not descending"
    assert pages >= BATCH // 7
    assert len(sent_during_walk) >= pages


def test_paginator_with_filters_returns_the_whole_filtered_set(fleet, stopped_node, pending_batch):
    first = fleet.command(pending_batch[0])
    listed = []
    for page in fleet.ssm.get_paginator("list_commands").paginate(
        InstanceId=stopped_node,
        Filters=[f("InvokedAfter", iso_ms(ms(first["RequestedDateTime"]))), f("DocumentName", DOCUMENT)],
        PaginationConfig={"PageSize": 9},
    ):
        assert len(page["Commands"]) <= 9
        listed.extend(c["CommandId"] for c in page["Commands"])

    assert len(listed) == len(set(listed))
    assert set(pending_batch) <= set(listed)


def test_list_command_invocations_paginator(fleet, stopped_node):
    ours = [fleet.run(stopped_node, ["true"]) for _ in range(10)]

    pages = list(
        fleet.ssm.get_paginator("list_command_invocations").paginate(
            InstanceId=stopped_node, PaginationConfig={"PageSize": 4}
        )
    )

    assert all(len(p["CommandInvocations"]) <= 4 for p in pages)
    walked = [i["CommandId"] for p in pages for i in p["CommandInvocations"]]
    assert len(walked) == len(set(walked))
    assert [cid for cid in walked if cid in set(ours)] == list(reversed(ours))
    invocations = [i for p in pages for i in p["CommandInvocations"]]
    assert all(i["InstanceId"] == stopped_node for i in invocations)
    assert all(i["CommandPlugins"] == [] for i in invocations)


# --------------------------------------------------------------------------- filters


@pytest.fixture(scope="module")
def zoo(fleet, node, stopped_node):
    """One command in each reachable state, keyed by name: ok, bad, timed, running (InProgress),
    pending and cancelled. Values are the final Command dicts (RequestedDateTime etc.)."""
    ids = {
        "ok": fleet.run(node, ["echo ok-output"]),
        "bad": fleet.run(node, ["exit 1"]),
        "timed": fleet.run(node, ["sleep 60"], parameters={"executionTimeout": ["5"]}),
        "running": fleet.run(node, ["sleep 120"]),
        "pending": fleet.run(stopped_node, ["true"]),
        "cancelled": fleet.run(stopped_node, ["true"]),
    }
    fleet.ssm.cancel_command(CommandId=ids["cancelled"])
    want = {
        "ok": {"Success"},
        "bad": {"Failed"},
        "timed": {"TimedOut"},
        "running": {"InProgress"},
        "pending": {"Pending"},
        "cancelled": {"Cancelled"},
    }
    commands = {name: fleet.wait_command(cid, want[name], timeout=40) for name, cid in ids.items()}
    yield commands
    fleet.ssm.cancel_command(CommandId=ids["running"])
    fleet.wait_command(ids["running"], {"Cancelled"}, timeout=20)


def ours(zoo, rows) -> set[str]:
    """Names of the zoo commands among the returned rows (commands or invocations)."""
    by_id = {c["CommandId"]: name for name, c in zoo.items()}
    return {by_id[r["CommandId"]] for r in rows if r["CommandId"] in by_id}


COMMAND_STATUS_CASES = [
    ("Pending", {"pending"}),
    ("InProgress", {"running"}),
    ("Success", {"ok"}),
    ("Cancelled", {"cancelled"}),
    ("Failed", {"bad"}),
    ("TimedOut", {"timed"}),
    ("ExecutionTimedOut", {"timed"}),
    ("DeliveryTimedOut", set()),
    ("Incomplete", set()),
    ("AccessDenied", set()),
    ("NoInstancesInTag", set()),
    ("LimitExceeded", set()),
]
COARSE = {"Pending", "InProgress", "Success", "Cancelled", "Failed", "TimedOut"}


@pytest.mark.parametrize("value,expected", COMMAND_STATUS_CASES, ids=[c[0] for c in COMMAND_STATUS_CASES])
def test_list_commands_status_filter(fleet, zoo, value, expected):
    rows = all_commands(fleet.ssm, Filters=[f("Status", value)])

    assert ours(zoo, rows) == expected
    field = "Status" if value in COARSE else "StatusDetails"
    if value != "LimitExceeded":  # its StatusDetails spelling is not documented
        assert {r[field] for r in rows} <= {value}


def test_list_commands_execution_stage_filter(fleet, zoo):
    executing = all_commands(fleet.ssm, Filters=[f("ExecutionStage", "Executing")])
    complete = all_commands(fleet.ssm, Filters=[f("ExecutionStage", "Complete")])

    assert ours(zoo, executing) == {"pending", "running"}
    assert ours(zoo, complete) == {"ok", "bad", "timed", "cancelled"}
    assert {r["Status"] for r in executing} <= {"Pending", "InProgress", "Cancelling"}
    assert {r["Status"] for r in complete} <= {"Success", "Failed", "TimedOut", "Cancelled"}


def test_list_commands_document_name_filter(fleet, zoo):
    shell = all_commands(fleet.ssm, Filters=[f("DocumentName", DOCUMENT)])
    other = all_commands(fleet.ssm, Filters=[f("DocumentName", "AWS-RunPowerShellScript")])

    assert ours(zoo, shell) == set(zoo)
    assert {r["DocumentName"] for r in shell} == {DOCUMENT}
    assert other == []


def test_list_commands_invoked_after_and_before_filters(fleet, zoo):
    times = {name: ms(c["RequestedDateTime"]) for name, c in zoo.items()}
    boundary = times["timed"]

    after = all_commands(fleet.ssm, Filters=[f("InvokedAfter", iso_ms(boundary))])
    before = all_commands(fleet.ssm, Filters=[f("InvokedBefore", iso_ms(boundary))])

    assert ours(zoo, after) == {n for n, t in times.items() if t >= boundary}
    assert ours(zoo, before) == {n for n, t in times.items() if t < boundary}
    assert all(ms(r["RequestedDateTime"]) >= boundary for r in after)
    assert all(ms(r["RequestedDateTime"]) < boundary for r in before)
    # Whole-second and naive forms are ISO-8601 too.
    assert ours(zoo, all_commands(fleet.ssm, Filters=[f("InvokedAfter", "2000-01-01T00:00:00Z")])) == set(zoo)
    assert all_commands(fleet.ssm, Filters=[f("InvokedBefore", "2000-01-01T00:00:00")]) == []


def test_list_commands_filters_are_anded(fleet, zoo):
    first = iso_ms(min(ms(c["RequestedDateTime"]) for c in zoo.values()))

    success_complete = all_commands(
        fleet.ssm, Filters=[f("Status", "Success"), f("ExecutionStage", "Complete")]
    )
    three = all_commands(
        fleet.ssm,
        Filters=[f("DocumentName", DOCUMENT), f("Status", "Failed"), f("InvokedAfter", first)],
    )
    contradiction = all_commands(fleet.ssm, Filters=[f("Status", "Success"), f("Status", "Failed")])
    failed_before = all_commands(fleet.ssm, Filters=[f("Status", "Failed"), f("InvokedBefore", first)])

    assert ours(zoo, success_complete) == {"ok"}
    assert {r["Status"] for r in success_complete} == {"Success"}
    assert ours(zoo, three) == {"bad"}
    assert {r["Status"] for r in three} == {"Failed"}
    assert contradiction == []
    assert ours(zoo, failed_before) == set()


def test_list_commands_by_command_id(fleet, zoo):
    bad = zoo["bad"]["CommandId"]

    only = fleet.ssm.list_commands(CommandId=bad)["Commands"]
    matching = fleet.ssm.list_commands(CommandId=bad, Filters=[f("Status", "Failed")])["Commands"]
    not_matching = fleet.ssm.list_commands(CommandId=bad, Filters=[f("Status", "Success")])["Commands"]

    assert [c["CommandId"] for c in only] == [bad]
    assert only[0]["Status"] == "Failed"
    assert [c["CommandId"] for c in matching] == [bad]
    assert not_matching == []


def test_list_commands_by_instance_id(fleet, zoo, node, stopped_node):
    on_stopped = all_commands(fleet.ssm, InstanceId=stopped_node)
    on_local = all_commands(fleet.ssm, InstanceId=node)
    local_success = all_commands(fleet.ssm, InstanceId=node, Filters=[f("Status", "Success")])

    assert ours(zoo, on_stopped) == {"pending", "cancelled"}
    assert ours(zoo, on_local) == {"ok", "bad", "timed", "running"}
    assert ours(zoo, local_success) == {"ok"}
    assert all(node not in r["InstanceIds"] for r in on_stopped)


INVOCATION_STATUS_CASES = [
    ("Pending", {"pending"}),
    ("InProgress", {"running"}),
    ("Delayed", set()),
    ("Success", {"ok"}),
    ("Cancelled", {"cancelled"}),
    ("Failed", {"bad"}),
    ("TimedOut", {"timed"}),
    ("ExecutionTimedOut", {"timed"}),
    ("AccessDenied", set()),
    ("DeliveryTimedOut", set()),
    ("Undeliverable", set()),
    ("InvalidPlatform", set()),
    ("Terminated", set()),
]


@pytest.mark.parametrize(
    "value,expected", INVOCATION_STATUS_CASES, ids=[c[0] for c in INVOCATION_STATUS_CASES]
)
def test_list_command_invocations_status_filter(fleet, zoo, value, expected):
    rows = all_invocations(fleet.ssm, Filters=[f("Status", value)])

    assert ours(zoo, rows) == expected
    field = "Status" if value in COARSE | {"Delayed"} else "StatusDetails"
    assert {r[field] for r in rows} <= {value}


def test_list_command_invocations_other_filters(fleet, zoo, stopped_node):
    first = iso_ms(min(ms(c["RequestedDateTime"]) for c in zoo.values()))

    by_doc = all_invocations(fleet.ssm, Filters=[f("DocumentName", DOCUMENT), f("InvokedAfter", first)])
    before = all_invocations(fleet.ssm, Filters=[f("InvokedBefore", first)])
    pending_here = all_invocations(fleet.ssm, InstanceId=stopped_node, Filters=[f("Status", "Pending")])

    assert ours(zoo, by_doc) == set(zoo)
    assert ours(zoo, before) == set()
    # The InstanceId + Pending restriction is ListCommands-only.
    assert ours(zoo, pending_here) == {"pending"}


def test_list_command_invocations_without_and_with_details(fleet, zoo, node):
    ok = zoo["ok"]["CommandId"]

    plain = fleet.ssm.list_command_invocations(CommandId=ok)["CommandInvocations"]
    detailed = fleet.ssm.list_command_invocations(CommandId=ok, Details=True)["CommandInvocations"]

    assert len(plain) == 1 and len(detailed) == 1
    inv = plain[0]
    assert (inv["CommandId"], inv["InstanceId"]) == (ok, node)
    assert (inv["Status"], inv["StatusDetails"]) == ("Success", "Success")
    assert inv["DocumentName"] == DOCUMENT
    assert inv["CommandPlugins"] == []
    for key in ("InstanceName", "StandardOutputUrl", "StandardErrorUrl", "Comment"):
        assert inv[key] == "", key
    (plugin,) = detailed[0]["CommandPlugins"]
    assert plugin["Name"] == "aws:runShellScript"
    assert (plugin["Status"], plugin["StatusDetails"]) == ("Success", "Success")
    assert plugin["ResponseCode"] == 0
    assert plugin["Output"] == "ok-output\n"
    assert plugin["ResponseStartDateTime"] <= plugin["ResponseFinishDateTime"]


def test_list_command_invocations_details_of_a_failed_and_a_pending_command(fleet, zoo, stopped_node):
    (bad,) = fleet.ssm.list_command_invocations(CommandId=zoo["bad"]["CommandId"], Details=True)[
        "CommandInvocations"
    ]
    (pending,) = fleet.ssm.list_command_invocations(
        CommandId=zoo["pending"]["CommandId"], Details=True
    )["CommandInvocations"]

    (plugin,) = bad["CommandPlugins"]
    assert (plugin["Status"], plugin["ResponseCode"]) == ("Failed", 1)
    assert pending["InstanceId"] == stopped_node
    assert pending["Status"] == "Pending"
    (waiting,) = pending["CommandPlugins"]
    assert (waiting["Status"], waiting["ResponseCode"]) == ("Pending", -1)
