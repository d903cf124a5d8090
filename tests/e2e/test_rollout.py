"""Rate control through boto3 against real `fleetrun agent` processes: MaxConcurrency bounds what
runs at once, MaxErrors stops the rollout (never-sent invocations end Terminated), percent forms,
and DeregisterManagedInstance turns undelivered work Undeliverable."""

import os
import time

import pytest


@pytest.fixture(scope="module")
def nodes(fleet):
    """Eight extra agents, sorted by node id (the order the rollout releases them in)."""
    agents = fleet.add_agents(8)
    return sorted(a.instance_id for a in agents)


def details(ssm, command_id):
    out = {}
    for page in ssm.get_paginator("list_command_invocations").paginate(CommandId=command_id):
        for inv in page["CommandInvocations"]:
            out[inv["InstanceId"]] = inv["StatusDetails"]
    return out


def test_max_concurrency_bounds_scripts_running_at_once(fleet, nodes, tmp_path):
    stamps = tmp_path / "stamps"
    stamps.mkdir()
    script = f'f={stamps}/$AWS_SSM_INSTANCE_ID; date +%s%N > $f; sleep 0.4; date +%s%N >> $f'
    cmd = fleet.send(nodes, [script], MaxConcurrency="2")
    assert cmd["MaxConcurrency"] == "2" and cmd["MaxErrors"] == "0"
    done = fleet.wait_command(cmd["CommandId"], timeout=60)
    assert done["StatusDetails"] == "Success"
    assert (done["TargetCount"], done["CompletedCount"]) == (8, 8)
    events = []
    for f in stamps.iterdir():
        start, end = (int(x) for x in f.read_text().split())
        events += [(start, 1), (end, -1)]
    assert len(events) == 16
    running = peak = 0
    for _, delta in sorted(events):
        running += delta
        peak = max(peak, running)
    assert peak <= 2, f"{peak} scripts ran at once with MaxConcurrency 2"


def test_max_errors_terminates_what_was_never_sent(fleet, nodes):
    failing = [nodes[1], nodes[3]]
    script = f'case $AWS_SSM_INSTANCE_ID in {"|".join(failing)}) exit 7;; esac'
    cmd = fleet.send(nodes, [script], MaxConcurrency="1", MaxErrors="1")
    done = fleet.wait_command(cmd["CommandId"], timeout=60)
    # Node 1 fails (1 error, within MaxErrors 1); node 3 fails (2 > 1): nodes 4..7 are never sent.
    assert done["Status"] == "Failed" and done["StatusDetails"] == "Failed"
    assert (done["TargetCount"], done["CompletedCount"], done["ErrorCount"]) == (8, 8, 2)
    got = details(fleet.ssm, cmd["CommandId"])
    assert [got[n] for n in nodes] == ["Success", "Failed", "Success", "Failed"] + ["Terminated"] * 4
    inv = fleet.invocation(cmd["CommandId"], nodes[7])
    assert inv["StatusDetails"] == "Terminated" and inv["ResponseCode"] == -1
    failed = fleet.ssm.list_commands(Filters=[{"key": "Status", "value": "Failed"}])["Commands"]
    assert cmd["CommandId"] in [c["CommandId"] for c in failed]


def test_percent_forms(fleet, nodes):
    # 13% of 8 → 2 at a time (rounded up); 25% of 8 → 2 errors tolerated, the 3rd stops it.
    failing = nodes[0:3]
    script = f'case $AWS_SSM_INSTANCE_ID in {"|".join(failing)}) exit 1;; esac; sleep 1'
    cmd = fleet.send(nodes, [script], MaxConcurrency="13%", MaxErrors="25%")
    done = fleet.wait_command(cmd["CommandId"], timeout=60)
    assert (done["MaxConcurrency"], done["MaxErrors"]) == ("13%", "25%")
    assert done["StatusDetails"] == "Failed"
    assert done["ErrorCount"] >= 3
    got = details(fleet.ssm, cmd["CommandId"])
    assert all(got[n] == "Failed" for n in failing)
    assert "Terminated" in got.values()


def test_deregistered_node_is_undeliverable(fleet):
    (agent,) = fleet.add_agents(1)
    agent.stop()
    cmd = fleet.send([agent.instance_id], ["echo never"])
    fleet.ssm.deregister_managed_instance(InstanceId=agent.instance_id)
    inv = fleet.wait_invocation(cmd["CommandId"], agent.instance_id)
    assert (inv["Status"], inv["StatusDetails"]) == ("Failed", "Undeliverable")
    with pytest.raises(fleet.ssm.exceptions.InvalidInstanceId):
        fleet.send([agent.instance_id], ["true"])
