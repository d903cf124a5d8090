"""Running real scripts through boto3: results, timeouts, cancellation, fan-out, output limits and
the shape of the echoed Command."""

from __future__ import annotations

import json
import os
import re
import time
from datetime import datetime, timezone

import pytest
from botocore.exceptions import WaiterError

from conftest import DOCUMENT, poll

FAST_WAITER = {"Delay": 1, "MaxAttempts": 30}


def test_success_reports_stdout_exit_code_and_times(fleet, node):
    command_id = fleet.run(node, ["echo hello"])

    inv = fleet.wait_invocation(command_id, node)

    assert inv["Status"] == "Success"
    assert inv["StatusDetails"] == "Success"
    assert inv["ResponseCode"] == 0
    assert inv["StandardOutputContent"] == "hello\n"
    assert inv["StandardErrorContent"] == ""
    assert inv["PluginName"] == "aws:runShellScript"
    assert inv["DocumentName"] == DOCUMENT
    assert (inv["CommandId"], inv["InstanceId"]) == (command_id, node)
    start, end = inv["ExecutionStartDateTime"], inv["ExecutionEndDateTime"]
    assert start.endswith("Z") and "T" in start, start
    assert end.endswith("Z") and "T" in end, end
    assert start <= end
    assert inv["ExecutionElapsedTime"].startswith("PT"), inv["ExecutionElapsedTime"]
    command = fleet.wait_command(command_id)
    assert (command["Status"], command["StatusDetails"]) == ("Success", "Success")
    assert (command["TargetCount"], command["CompletedCount"], command["ErrorCount"]) == (1, 1, 0)


def test_failure_reports_exit_code_and_stderr(fleet, node):
    command_id = fleet.run(node, ["echo partial", "echo oops >&2", "exit 3"])

    inv = fleet.wait_invocation(command_id, node)

    assert (inv["Status"], inv["StatusDetails"]) == ("Failed", "Failed")
    assert inv["ResponseCode"] == 3
    assert inv["StandardOutputContent"] == "partial\n"
    # As amazon-ssm-agent: Go's exec error is appended to the stream, no newline of its own.
    assert inv["StandardErrorContent"] == "oops\nfailed to run commands: exit status 3"
    command = fleet.wait_command(command_id)
    assert (command["Status"], command["StatusDetails"]) == ("Failed", "Failed")
    assert (command["CompletedCount"], command["ErrorCount"]) == (1, 1)
    (inv_details,) = fleet.ssm.list_command_invocations(CommandId=command_id, Details=True)[
        "CommandInvocations"
    ]
    (plugin,) = inv_details["CommandPlugins"]
    assert (plugin["Status"], plugin["ResponseCode"]) == ("Failed", 3)
    assert plugin["Output"] == (
        "partial\n\n----------ERROR-------\noops\nfailed to run commands: exit status 3"
    )


def test_a_missing_file_fails_with_the_stderr_aws_gives(fleet, node):
    command_id = fleet.run(node, ["cat /wrong/file"])
    inv = fleet.wait_invocation(command_id, node)
    assert (inv["Status"], inv["ResponseCode"]) == ("Failed", 1), inv
    assert inv["StandardErrorContent"] == (
        "cat: /wrong/file: No such file or directory\nfailed to run commands: exit status 1"
    )


def test_a_bash_shebang_runs_the_script_under_bash(fleet, node):
    # amazon-ssm-agent runs `sh -c <script file>`: the kernel honours the `#!` line.
    command_id = fleet.run(node, ["#!/bin/bash", 'if [[ "a" == a* ]]; then echo "bash $BASH_VERSION"; fi'])
    inv = fleet.wait_invocation(command_id, node)
    assert (inv["Status"], inv["ResponseCode"]) == ("Success", 0), inv
    assert inv["StandardOutputContent"].startswith("bash "), inv
    assert inv["StandardErrorContent"] == "", inv
    # Without one the script is read by sh, where `[[` does not exist.
    command_id = fleet.run(node, ["[[ a == a ]] && echo bash"])
    inv = fleet.wait_invocation(command_id, node)
    assert (inv["Status"], inv["ResponseCode"], inv["StandardOutputContent"]) == ("Failed", 127, ""), inv
    assert "not found" in inv["StandardErrorContent"], inv
    assert inv["StandardErrorContent"].endswith("failed to run commands: exit status 127"), inv


def test_commands_run_as_one_script_in_order(fleet, node):
    command_id = fleet.run(node, ["X=kept", "false", 'echo "after false: $X"'])

    inv = fleet.wait_invocation(command_id, node)

    assert (inv["Status"], inv["ResponseCode"]) == ("Success", 0)
    assert inv["StandardOutputContent"] == "after false: kept\n"


def test_working_directory_is_honoured(fleet, node, tmp_path):
    workdir = (tmp_path / "work dir").resolve()
    workdir.mkdir()
    command_id = fleet.run(node, ["pwd"], parameters={"workingDirectory": [str(workdir)]})

    inv = fleet.wait_invocation(command_id, node)

    assert inv["StandardOutputContent"] == f"{workdir}\n"


def test_pending_invocation_reports_no_execution_yet(fleet, stopped_node):
    command_id = fleet.run(stopped_node, ["true"])

    inv = fleet.invocation(command_id, stopped_node)

    assert (inv["Status"], inv["StatusDetails"]) == ("Pending", "Pending")
    assert inv["ResponseCode"] == -1
    for key in (
        "StandardOutputContent",
        "StandardErrorContent",
        "ExecutionStartDateTime",
        "ExecutionElapsedTime",
        "ExecutionEndDateTime",
        "StandardOutputUrl",
        "StandardErrorUrl",
    ):
        assert inv[key] == "", key


def test_execution_timeout_kills_the_script(fleet, node):
    started = time.monotonic()
    command_id = fleet.run(node, ["sleep 60"], parameters={"executionTimeout": ["5"]})

    inv = fleet.wait_invocation(command_id, node, timeout=40)

    assert time.monotonic() - started < 30
    assert (inv["Status"], inv["StatusDetails"]) == ("TimedOut", "ExecutionTimedOut")
    assert inv["ResponseCode"] == 137
    command = fleet.wait_command(command_id)
    assert (command["Status"], command["StatusDetails"]) == ("TimedOut", "ExecutionTimedOut")
    assert command["ErrorCount"] == 1


def test_cancel_kills_a_running_script(fleet, node, tmp_path):
    pid_file = tmp_path / "script.pid"
    command_id = fleet.run(node, [f"echo $$ > {pid_file}.tmp && mv {pid_file}.tmp {pid_file}", "sleep 60"])
    poll("the script to start", pid_file.exists, 20)
    pid = int(pid_file.read_text())
    assert fleet.invocation(command_id, node)["Status"] == "InProgress"

    fleet.ssm.cancel_command(CommandId=command_id)

    inv = fleet.wait_invocation(command_id, node, timeout=20)
    assert (inv["Status"], inv["StatusDetails"]) == ("Cancelled", "Cancelled")
    command = fleet.wait_command(command_id)
    assert (command["Status"], command["StatusDetails"]) == ("Cancelled", "Cancelled")

    def gone():
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        return False

    poll(f"script process {pid} to be killed", gone, 10)


def test_cancel_of_an_undelivered_command_is_immediate(fleet, stopped_node):
    command_id = fleet.run(stopped_node, ["echo never"])
    assert fleet.invocation(command_id, stopped_node)["Status"] == "Pending"

    fleet.ssm.cancel_command(CommandId=command_id, InstanceIds=[stopped_node])

    inv = fleet.wait_invocation(command_id, stopped_node, timeout=10)
    assert inv["Status"] == "Cancelled"
    assert inv["ResponseCode"] == -1
    assert inv["StandardOutputContent"] == ""
    assert fleet.wait_command(command_id)["Status"] == "Cancelled"


def test_command_fans_out_to_two_agents(fleet, two_agents):
    nodes = [a.instance_id for a in two_agents]
    command = fleet.send(nodes, ['echo "ran on $AWS_SSM_INSTANCE_ID"'])
    assert command["TargetCount"] == 2
    assert command["InstanceIds"] == nodes

    for n in nodes:
        inv = fleet.wait_invocation(command["CommandId"], n)
        assert inv["Status"] == "Success"
        assert inv["StandardOutputContent"] == f"ran on {n}\n"
    invocations = fleet.ssm.list_command_invocations(CommandId=command["CommandId"])[
        "CommandInvocations"
    ]
    assert sorted(i["InstanceId"] for i in invocations) == sorted(nodes)
    assert all(i["Status"] == "Success" for i in invocations)
    final = fleet.wait_command(command["CommandId"])
    assert final["Status"] == "Success"
    assert (final["TargetCount"], final["CompletedCount"], final["ErrorCount"]) == (2, 2, 0)


def test_large_output_is_truncated_like_aws(fleet, node):
    command_id = fleet.run(
        node,
        [
            "head -c 30000 /dev/zero | tr '\\0' a",
            "head -c 9000 /dev/zero | tr '\\0' e >&2",
        ],
    )

    inv = fleet.wait_invocation(command_id, node)

    assert inv["Status"] == "Success"
    stdout = inv["StandardOutputContent"]
    assert len(stdout) == 24_000
    assert stdout.endswith("--output truncated--")
    assert set(stdout[: -len("--output truncated--")]) == {"a"}
    stderr = inv["StandardErrorContent"]
    assert len(stderr) == 8_000
    assert stderr.startswith("e" * 7_900)
    details = fleet.ssm.list_command_invocations(CommandId=command_id, Details=True)
    (plugin,) = details["CommandInvocations"][0]["CommandPlugins"]
    assert plugin["Name"] == "aws:runShellScript"
    assert len(plugin["Output"]) <= 2_500
    assert "---Output truncated---" in plugin["Output"]


def test_script_sees_ssm_environment_variables(fleet, node):
    command_id = fleet.run(
        node, ['echo "$AWS_SSM_INSTANCE_ID|$AWS_SSM_REGION_NAME|$SSM_COMMAND_ID"']
    )

    inv = fleet.wait_invocation(command_id, node)

    assert inv["StandardOutputContent"] == f"{node}|us-east-1|{command_id}\n"


def test_targets_with_instance_ids_key_are_echoed(fleet, node):
    targets = [{"Key": "InstanceIds", "Values": [node]}]
    command = fleet.ssm.send_command(
        Targets=targets, DocumentName=DOCUMENT, Parameters={"commands": ["echo targeted"]}
    )["Command"]

    assert command["Targets"] == targets
    assert command["InstanceIds"] == []
    assert command["TargetCount"] == 1
    inv = fleet.wait_invocation(command["CommandId"], node)
    assert inv["StandardOutputContent"] == "targeted\n"
    listed = fleet.command(command["CommandId"])
    assert listed["Targets"] == targets
    assert listed["InstanceIds"] == []
    by_node = fleet.ssm.list_commands(CommandId=command["CommandId"], InstanceId=node)["Commands"]
    assert [c["CommandId"] for c in by_node] == [command["CommandId"]]
    (inv,) = fleet.ssm.list_command_invocations(CommandId=command["CommandId"])["CommandInvocations"]
    assert inv["InstanceId"] == node


def test_command_echo_has_aws_defaults(fleet, node):
    before = datetime.now(timezone.utc)
    command = fleet.send([node], ["true"])

    assert len(command["CommandId"]) == 36
    assert command["DocumentName"] == DOCUMENT
    assert command["Comment"] == ""
    assert command["Parameters"] == {"commands": ["true"]}
    assert command["InstanceIds"] == [node]
    assert command["Targets"] == []
    assert (command["Status"], command["StatusDetails"]) == ("Pending", "Pending")
    for key in ("OutputS3Region", "OutputS3BucketName", "OutputS3KeyPrefix", "ServiceRole"):
        assert command[key] == "", key
    assert command["NotificationConfig"] == {
        "NotificationArn": "",
        "NotificationEvents": [],
        "NotificationType": "",
    }
    assert command["CloudWatchOutputConfig"] == {
        "CloudWatchLogGroupName": "",
        "CloudWatchOutputEnabled": False,
    }
    assert command["MaxConcurrency"] == "50"
    assert command["MaxErrors"] == "0"
    assert command["TimeoutSeconds"] == 3600
    counts = ("TargetCount", "CompletedCount", "ErrorCount", "DeliveryTimedOutCount")
    assert tuple(command[k] for k in counts) == (1, 0, 0, 0)
    requested, expires = command["RequestedDateTime"], command["ExpiresAfter"]
    assert abs((requested - before).total_seconds()) < 60
    assert (expires - requested).total_seconds() == pytest.approx(7200, abs=0.01)
    fleet.wait_invocation(command["CommandId"], node)


def test_command_echoes_explicit_settings(fleet, stopped_node):
    # SendCommand checks that the output bucket exists (InvalidOutputFolder otherwise).
    bucket = f"e2e-echo-{os.urandom(4).hex()}"
    fleet.s3.client().create_bucket(Bucket=bucket)
    command = fleet.send(
        [stopped_node],
        ["true"],
        parameters={"executionTimeout": ["100"]},
        Comment="explicit settings",
        TimeoutSeconds=600,
        MaxConcurrency="2",
        MaxErrors="10%",
        OutputS3BucketName=bucket,
        OutputS3KeyPrefix="prefix/",
        CloudWatchOutputConfig={"CloudWatchOutputEnabled": True, "CloudWatchLogGroupName": "grp"},
    )

    assert command["Comment"] == "explicit settings"
    assert command["TimeoutSeconds"] == 600
    assert (command["MaxConcurrency"], command["MaxErrors"]) == ("2", "10%")
    assert (command["OutputS3BucketName"], command["OutputS3KeyPrefix"]) == (bucket, "prefix/")
    assert command["CloudWatchOutputConfig"] == {
        "CloudWatchLogGroupName": "grp",
        "CloudWatchOutputEnabled": True,
    }
    assert command["Parameters"] == {"commands": ["true"], "executionTimeout": ["100"]}
    lifetime = (command["ExpiresAfter"] - command["RequestedDateTime"]).total_seconds()
    assert lifetime == pytest.approx(600 + 100, abs=0.01)
    assert fleet.command(command["CommandId"])["Comment"] == "explicit settings"


def test_wire_timestamps_are_epoch_numbers_and_execution_times_iso_strings(fleet, node):
    command_id = fleet.run(node, ["true"])
    fleet.wait_invocation(command_id, node)
    body = json.dumps({"CommandId": command_id}).encode()

    status, headers, listed = fleet.raw("AmazonSSM.ListCommands", body)
    assert status == 200, listed
    assert headers["content-type"].startswith("application/x-amz-json-1.1")
    assert "x-amzn-requestid" in headers
    (command,) = json.loads(listed)["Commands"]
    for key in ("RequestedDateTime", "ExpiresAfter"):
        assert isinstance(command[key], (int, float)) and not isinstance(command[key], bool), key
    status, _, inv = fleet.raw(
        "AmazonSSM.GetCommandInvocation",
        json.dumps({"CommandId": command_id, "InstanceId": node}).encode(),
    )
    assert status == 200, inv
    inv = json.loads(inv)
    for key in ("ExecutionStartDateTime", "ExecutionEndDateTime"):
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", inv[key]), inv[key]
    assert re.fullmatch(r"PT(\d+H)?(\d+M)?\d+(\.\d+)?S", inv["ExecutionElapsedTime"]), inv


def test_get_invocation_right_after_send_exists(fleet, node):
    for _ in range(5):
        command_id = fleet.run(node, ["true"])
        inv = fleet.invocation(command_id, node)
        assert inv["Status"] in {"Pending", "InProgress", "Success"}


def test_command_executed_waiter_succeeds(fleet, node):
    command_id = fleet.run(node, ["echo waited"])

    fleet.ssm.get_waiter("command_executed").wait(
        CommandId=command_id, InstanceId=node, WaiterConfig=FAST_WAITER
    )

    assert fleet.invocation(command_id, node)["StandardOutputContent"] == "waited\n"


def test_command_executed_waiter_fails_on_a_failed_command(fleet, node):
    command_id = fleet.run(node, ["exit 7"])

    with pytest.raises(WaiterError) as err:
        fleet.ssm.get_waiter("command_executed").wait(
            CommandId=command_id, InstanceId=node, WaiterConfig=FAST_WAITER
        )

    assert "terminal failure state" in str(err.value)
    assert err.value.last_response["Status"] == "Failed"
    assert err.value.last_response["ResponseCode"] == 7
