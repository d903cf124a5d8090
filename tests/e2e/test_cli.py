"""The unmodified AWS CLI v1 (`aws ssm …`) against fleetrun."""

from __future__ import annotations

import re

import pytest

from conftest import DOCUMENT, TEST_STORE, make_client, start_server, wait_invocation


@pytest.fixture(scope="module")
def cli_command(fleet, node):
    """`aws ssm send-command` + `aws ssm wait command-executed`, once for the module."""
    sent = fleet.aws_json(
        "send-command",
        "--instance-ids", node,
        "--document-name", DOCUMENT,
        # Still running at the waiter's first poll, so its retry path is exercised too.
        "--parameters", 'commands=["sleep 2","echo hello"]',
        "--comment", "from the cli",
    )
    command_id = sent["Command"]["CommandId"]
    waited = fleet.aws("wait", "command-executed", "--command-id", command_id, "--instance-id", node)
    return sent["Command"], waited


def test_send_command_prints_the_command(cli_command, node):
    command, _ = cli_command
    assert re.fullmatch(r"[0-9a-f-]{36}", command["CommandId"])
    assert command["DocumentName"] == DOCUMENT
    assert command["InstanceIds"] == [node]
    assert command["Parameters"] == {"commands": ["sleep 2", "echo hello"]}
    assert command["Comment"] == "from the cli"
    assert command["Status"] == "Pending"


def test_wait_command_executed_exits_zero(cli_command):
    _, waited = cli_command
    assert waited.returncode == 0, waited.stderr


def test_get_command_invocation_shows_stdout(fleet, cli_command, node):
    command, _ = cli_command
    inv = fleet.aws_json(
        "get-command-invocation", "--command-id", command["CommandId"], "--instance-id", node
    )
    assert inv["StandardOutputContent"] == "hello\n"
    assert (inv["Status"], inv["StatusDetails"], inv["ResponseCode"]) == ("Success", "Success", 0)
    assert inv["Comment"] == "from the cli"


def test_list_commands_status_filter_includes_it(fleet, cli_command):
    command, _ = cli_command
    listed = fleet.aws_json("list-commands", "--filters", "key=Status,value=Success")["Commands"]
    assert command["CommandId"] in {c["CommandId"] for c in listed}
    assert {c["Status"] for c in listed} == {"Success"}


def test_list_commands_by_command_id(fleet, cli_command):
    command, _ = cli_command
    (listed,) = fleet.aws_json("list-commands", "--command-id", command["CommandId"])["Commands"]
    assert (listed["Status"], listed["CompletedCount"]) == ("Success", 1)


def test_list_command_invocations_with_details(fleet, cli_command, node):
    command, _ = cli_command
    (inv,) = fleet.aws_json(
        "list-command-invocations", "--command-id", command["CommandId"], "--details"
    )["CommandInvocations"]
    assert (inv["InstanceId"], inv["Status"]) == (node, "Success")
    (plugin,) = inv["CommandPlugins"]
    assert plugin["Name"] == "aws:runShellScript"
    assert plugin["Output"] == "hello\n"
    assert plugin["ResponseCode"] == 0


def test_describe_instance_information_lists_the_local_node(fleet, node):
    info = fleet.aws_json(
        "describe-instance-information", "--filters", f"Key=InstanceIds,Values={node}"
    )["InstanceInformationList"]
    (me,) = info
    assert me["InstanceId"] == node
    assert me["PingStatus"] == "Online"
    assert me["ResourceType"] == "ManagedInstance"
    assert me["PlatformType"] == "Linux"


def test_create_activation_and_describe_activations(fleet):
    created = fleet.aws_json("create-activation", "--iam-role", "r", "--default-instance-name", "cli-web")
    activation_id = created["ActivationId"]
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", activation_id)
    assert 20 <= len(created["ActivationCode"]) <= 250

    described = fleet.aws_json(
        "describe-activations", "--filters", f"FilterKey=ActivationIds,FilterValues={activation_id}"
    )["ActivationList"]

    (activation,) = described
    assert activation["ActivationId"] == activation_id
    assert activation["IamRole"] == "r"
    assert activation["DefaultInstanceName"] == "cli-web"
    assert activation["RegistrationsCount"] == 0
    assert activation["RegistrationLimit"] == 1
    assert activation["Expired"] is False


def test_activation_defaults_expire_after_one_day(fleet):
    created = fleet.ssm.create_activation(IamRole="r")
    (activation,) = fleet.ssm.describe_activations(
        Filters=[{"FilterKey": "ActivationIds", "FilterValues": [created["ActivationId"]]}]
    )["ActivationList"]
    lifetime = activation["ExpirationDate"] - activation["CreatedDate"]
    assert lifetime.total_seconds() == pytest.approx(86_400, abs=1)


def test_cli_reports_service_errors_with_their_code(fleet, node):
    result = fleet.aws(
        "get-command-invocation",
        "--command-id", "00000000-0000-0000-0000-000000000000",
        "--instance-id", node,
    )
    assert result.returncode != 0
    assert "(InvocationDoesNotExist)" in result.stderr, result.stderr


# --------------------------------------------------------------------------- the fleetrun command line


def test_server_without_local_node_serves_and_stops_cleanly_on_sigterm(fleet, tmp_path):
    server = start_server(fleet.binary, tmp_path / "data", tmp_path, "solo", local_node=False)
    try:
        client = make_client(server.endpoint)
        assert client.list_commands()["Commands"] == []
        assert client.describe_instance_information()["InstanceInformationList"] == []
    finally:
        code = server.proc.stop()
    assert code == 0, server.proc.stderr_tail()


def test_readme_default_relative_data_dir_runs_commands_on_the_local_node(fleet, tmp_path):
    """The README's first command uses the default `--data-dir fleetrun-data`, relative to the cwd."""
    server = start_server(
        fleet.binary, "fleetrun-data", tmp_path, "relative", local_node=True, cwd=tmp_path
    )
    try:
        client = make_client(server.endpoint)
        sent = client.send_command(
            InstanceIds=[server.node_id], DocumentName=DOCUMENT, Parameters={"commands": ["echo ok"]}
        )["Command"]["CommandId"]
        done = wait_invocation(client, sent, server.node_id)
        assert (done["Status"], done["StandardOutputContent"]) == ("Success", "ok\n"), done
        if TEST_STORE == "sqlite":
            assert (tmp_path / "fleetrun-data" / "fleetrun.db").exists()
    finally:
        assert server.proc.stop() == 0, server.proc.stderr_tail()


def test_server_restart_keeps_history_and_the_local_node_identity(fleet, tmp_path):
    data = tmp_path / "data"
    first = start_server(fleet.binary, data, tmp_path, "restart-1", local_node=True)
    try:
        client = make_client(first.endpoint)
        before = client.send_command(
            InstanceIds=[first.node_id], DocumentName=DOCUMENT, Parameters={"commands": ["echo before"]}
        )["Command"]["CommandId"]
        assert wait_invocation(client, before, first.node_id)["Status"] == "Success"
    finally:
        assert first.proc.stop() == 0, first.proc.stderr_tail()

    second = start_server(fleet.binary, data, tmp_path, "restart-2", local_node=True)
    try:
        assert second.node_id == first.node_id
        client = make_client(second.endpoint)
        old = client.get_command_invocation(CommandId=before, InstanceId=second.node_id)
        assert (old["Status"], old["StandardOutputContent"]) == ("Success", "before\n")
        after = client.send_command(
            InstanceIds=[second.node_id], DocumentName=DOCUMENT, Parameters={"commands": ["echo after"]}
        )["Command"]["CommandId"]
        done = wait_invocation(client, after, second.node_id)
        assert done["StandardOutputContent"] == "after\n"
    finally:
        assert second.proc.stop() == 0, second.proc.stderr_tail()


def test_agent_registers_once_and_restarts_with_its_saved_identity(fleet):
    (agent,) = fleet.add_agents(1)
    assert agent.stop() == 0, agent.proc.stderr_tail()

    again = fleet.restart_agent(agent)  # no --activation-id / --activation-code this time

    command_id = fleet.run(agent.instance_id, ["echo again"])
    inv = fleet.wait_invocation(command_id, agent.instance_id)
    assert inv["StandardOutputContent"] == "again\n"
    assert again.proc.running()
    nodes = fleet.ssm.describe_instance_information(
        Filters=[{"Key": "InstanceIds", "Values": [agent.instance_id]}]
    )["InstanceInformationList"]
    assert [n["InstanceId"] for n in nodes] == [agent.instance_id]
    assert again.stop() == 0, again.proc.stderr_tail()
