"""Restarts that don't kill work: a script keeps running through a restart of the server that runs
it as its local node, and through a kill -9 of its agent; the next process reports its real end."""

from __future__ import annotations

import datetime
import signal
import time

from conftest import DOCUMENT, make_client, poll, start_server, wait_invocation


def _elapsed_seconds(inv: dict) -> float:
    """ExecutionElapsedTime is ISO 8601 (`PT20.015S`)."""
    text = inv["ExecutionElapsedTime"]
    assert text.startswith("PT") and text.endswith("S"), text
    return float(text[2:-1])


def _parse_time(text: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))


def _wait_running(client, command_id: str, node: str) -> None:
    wait_invocation(client, command_id, node, statuses={"InProgress"}, timeout=30)
    time.sleep(1.0)  # the agent has started the script, not merely taken the message


def test_a_server_restart_with_local_node_does_not_kill_a_running_script(fleet, tmp_path):
    data = tmp_path / "data"
    first = start_server(fleet.binary, data, tmp_path, "drain-1", local_node=True)
    try:
        client = make_client(first.endpoint)
        command_id = client.send_command(
            InstanceIds=[first.node_id],
            DocumentName=DOCUMENT,
            Parameters={"commands": ["sleep 20", "echo done"]},
        )["Command"]["CommandId"]
        _wait_running(client, command_id, first.node_id)
        restarted_at = datetime.datetime.now(datetime.timezone.utc)
    finally:
        # SIGTERM: the local agent drains (5 s), leaves the script running, the server stops.
        t0 = time.monotonic()
        assert first.proc.stop(grace=30) == 0, first.proc.stderr_tail()
        stop_took = time.monotonic() - t0
    assert stop_took < 12, f"shutdown took {stop_took:.1f}s"
    assert "keep running" in first.proc.log_path.read_text(), first.proc.stderr_tail()

    second = start_server(fleet.binary, data, tmp_path, "drain-2", local_node=True)
    try:
        client = make_client(second.endpoint)
        inv = client.get_command_invocation(CommandId=command_id, InstanceId=second.node_id)
        assert inv["Status"] == "InProgress", inv
        done = wait_invocation(client, command_id, second.node_id, timeout=60)
        assert (done["Status"], done["ResponseCode"]) == ("Success", 0), done
        assert done["StandardOutputContent"] == "done\n", done
        assert done["StandardErrorContent"] == "", done
        # Real times: started before the restart, ran its 20 s.
        assert 19.5 <= _elapsed_seconds(done) < 30, done
        assert _parse_time(done["ExecutionStartDateTime"]) < restarted_at, done
        command = client.list_commands(CommandId=command_id)["Commands"][0]
        assert (command["Status"], command["CompletedCount"], command["ErrorCount"]) == ("Success", 1, 0)
    finally:
        assert second.proc.stop() == 0, second.proc.stderr_tail()


def test_kill_9_of_an_agent_mid_script_then_restart_reports_the_real_result(fleet):
    (agent,) = fleet.add_agents(1)
    command_id = fleet.run(agent.instance_id, ["sleep 10", "echo done"])
    _wait_running(fleet.ssm, command_id, agent.instance_id)
    agent.proc.popen.send_signal(signal.SIGKILL)
    agent.proc.popen.wait(10)

    again = fleet.restart_agent(agent)
    # Listed by the restarted agent from its first poll: still InProgress, not failed.
    time.sleep(1.5)
    assert fleet.invocation(command_id, agent.instance_id)["Status"] == "InProgress"
    done = fleet.wait_invocation(command_id, agent.instance_id, timeout=40)
    assert (done["Status"], done["ResponseCode"]) == ("Success", 0), done
    assert done["StandardOutputContent"] == "done\n", done
    assert 9.5 <= _elapsed_seconds(done) < 20, done
    assert again.proc.running()
    assert "resuming a command" in again.proc.log_path.read_text(), again.proc.stderr_tail()


def test_a_cancel_reaches_a_script_the_restarted_agent_resumed(fleet):
    (agent,) = fleet.add_agents(1)
    command_id = fleet.run(agent.instance_id, ["echo started", "sleep 600"])
    _wait_running(fleet.ssm, command_id, agent.instance_id)
    agent.proc.popen.send_signal(signal.SIGKILL)
    agent.proc.popen.wait(10)
    fleet.restart_agent(agent)
    poll(
        "the restarted agent to poll",
        lambda: fleet.ssm.describe_instance_information(
            Filters=[{"Key": "InstanceIds", "Values": [agent.instance_id]}]
        )["InstanceInformationList"][0]["PingStatus"] == "Online",
        20,
    )
    fleet.ssm.cancel_command(CommandId=command_id)
    done = fleet.wait_invocation(command_id, agent.instance_id, timeout=20)
    assert (done["Status"], done["ResponseCode"]) == ("Cancelled", 137), done
    assert done["StandardOutputContent"] == "started\n", done
