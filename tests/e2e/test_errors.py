"""Every client error the server answers, as boto3 sees it (code + HTTP 400), and the wire-level
errors for bodies and targets botocore would never send (raw HTTP)."""

from __future__ import annotations

import json
import uuid

import pytest
from botocore.exceptions import ClientError

from conftest import DOCUMENT

UNKNOWN_NODE = "mi-0123456789abcdef0"
UNKNOWN_COMMAND = "00000000-0000-0000-0000-000000000000"
SHELL = {"commands": ["true"]}


def error_of(call, **kwargs) -> tuple[str, int, str]:
    """Runs a call expected to fail; returns (error code, HTTP status, message)."""
    with pytest.raises(ClientError) as info:
        call(**kwargs)
    response = info.value.response
    return (
        response["Error"]["Code"],
        response["ResponseMetadata"]["HTTPStatusCode"],
        response["Error"].get("Message", ""),
    )


def assert_error(expected_code: str, call, **kwargs) -> str:
    code, status, message = error_of(call, **kwargs)
    assert (code, status) == (expected_code, 400), message
    assert message, f"{expected_code} without a message"
    return message


@pytest.fixture(scope="module")
def api(fleet):
    """A client without botocore's own checks, so the server's validation is what answers."""
    return fleet.ssm_unchecked


@pytest.fixture(scope="module")
def finished_command(fleet, node) -> str:
    command_id = fleet.run(node, ["true"])
    fleet.wait_invocation(command_id, node)
    return command_id


# --------------------------------------------------------------------------- SendCommand


def send(api, **kwargs):
    kwargs.setdefault("DocumentName", DOCUMENT)
    kwargs.setdefault("Parameters", SHELL)
    return api.send_command(**kwargs)


def test_send_to_an_unknown_node_is_invalid_instance_id(api):
    assert_error("InvalidInstanceId", send, api=api, InstanceIds=[UNKNOWN_NODE])


def test_send_to_a_malformed_node_id_is_invalid_instance_id(api):
    assert_error("InvalidInstanceId", send, api=api, InstanceIds=["bad"])


def test_send_to_the_same_node_twice_is_duplicate_instance_id(api, node):
    assert_error("DuplicateInstanceId", send, api=api, InstanceIds=[node, node])


def test_send_without_instance_ids_or_targets_is_a_validation_error(api):
    assert_error("ValidationException", send, api=api)


def test_send_with_both_instance_ids_and_targets_is_a_validation_error(api, node):
    assert_error(
        "ValidationException",
        send,
        api=api,
        InstanceIds=[node],
        Targets=[{"Key": "InstanceIds", "Values": [node]}],
    )


def test_send_with_six_targets_is_a_validation_error(api, node):
    targets = [{"Key": "InstanceIds", "Values": [node]}] * 6
    assert_error("ValidationException", send, api=api, Targets=targets)


def test_send_with_timeout_seconds_10_is_a_validation_error(api, node):
    message = assert_error("ValidationException", send, api=api, InstanceIds=[node], TimeoutSeconds=10)
    assert "timeoutSeconds" in message or "TimeoutSeconds" in message


def test_send_with_a_101_character_comment_is_a_validation_error(api, node):
    assert_error("ValidationException", send, api=api, InstanceIds=[node], Comment="c" * 101)


def test_send_with_max_concurrency_0_is_a_validation_error(api, node):
    assert_error("ValidationException", send, api=api, InstanceIds=[node], MaxConcurrency="0")


def test_send_of_an_unknown_document_is_invalid_document(api, node):
    assert_error(
        "InvalidDocument", send, api=api, InstanceIds=[node], DocumentName="No-Such-Document"
    )


def test_send_of_an_unknown_document_version_is_invalid_document_version(api, node):
    assert_error("InvalidDocumentVersion", send, api=api, InstanceIds=[node], DocumentVersion="7")


def test_send_without_the_required_commands_parameter_is_invalid_parameters(api, node):
    assert_error("InvalidParameters", send, api=api, InstanceIds=[node], Parameters={})


def test_send_with_an_unknown_parameter_is_invalid_parameters(api, node):
    assert_error(
        "InvalidParameters",
        send,
        api=api,
        InstanceIds=[node],
        Parameters={"commands": ["true"], "noSuchParameter": ["x"]},
    )


def test_values_at_the_limits_are_accepted(fleet, api, node):
    command = send(
        api, InstanceIds=[node], TimeoutSeconds=30, Comment="c" * 100, MaxConcurrency="100%", MaxErrors="0%"
    )["Command"]
    assert (command["TimeoutSeconds"], len(command["Comment"])) == (30, 100)
    assert len(api.list_commands(MaxResults=50)["Commands"]) <= 50
    assert len(api.list_command_invocations(MaxResults=50)["CommandInvocations"]) <= 50
    fleet.wait_invocation(command["CommandId"], node)


def test_a_rejected_send_creates_no_command(fleet, api, node):
    marker = f"rejected-{uuid.uuid4()}"
    assert_error("ValidationException", send, api=api, InstanceIds=[node], Comment=marker * 3)
    recent = fleet.ssm.list_commands(MaxResults=50)["Commands"]
    assert all(not c["Comment"].startswith("rejected-") for c in recent)


# --------------------------------------------------------------------------- ListCommands & co


def test_list_commands_max_results_51_is_a_validation_error(api):
    assert_error("ValidationException", api.list_commands, MaxResults=51)


def test_list_command_invocations_max_results_51_is_a_validation_error(api):
    assert_error("ValidationException", api.list_command_invocations, MaxResults=51)


def test_list_commands_of_an_unknown_command_id_is_invalid_command_id(api):
    assert_error("InvalidCommandId", api.list_commands, CommandId=UNKNOWN_COMMAND)


def test_list_commands_of_a_malformed_instance_id_is_invalid_instance_id(api):
    assert_error("InvalidInstanceId", api.list_commands, InstanceId="i-bad")


def test_garbage_next_token_is_invalid_next_token(api):
    assert_error("InvalidNextToken", api.list_commands, NextToken="garbage")
    assert_error("InvalidNextToken", api.list_command_invocations, NextToken="garbage")


def test_next_token_from_a_different_query_is_invalid_next_token(fleet, api, stopped_node):
    for _ in range(3):
        fleet.run(stopped_node, ["true"])
    token = fleet.ssm.list_commands(MaxResults=1)["NextToken"]
    inv_token = fleet.ssm.list_command_invocations(MaxResults=1)["NextToken"]

    assert_error(
        "InvalidNextToken",
        api.list_commands,
        MaxResults=1,
        Filters=[{"key": "Status", "value": "Success"}],
        NextToken=token,
    )
    assert_error("InvalidNextToken", api.list_commands, MaxResults=1, NextToken=inv_token)
    assert_error("InvalidNextToken", api.list_command_invocations, MaxResults=1, NextToken=token)
    # The token still continues its own query.
    assert fleet.ssm.list_commands(MaxResults=1, NextToken=token)["Commands"]


def test_unknown_filter_key_is_invalid_filter_key(api):
    foo = [{"key": "Foo", "value": "x"}]
    assert_error("InvalidFilterKey", api.list_commands, Filters=foo)
    assert_error("InvalidFilterKey", api.list_command_invocations, Filters=foo)


def test_execution_stage_on_list_command_invocations_is_invalid_filter_key(api):
    assert_error(
        "InvalidFilterKey",
        api.list_command_invocations,
        Filters=[{"key": "ExecutionStage", "value": "Complete"}],
    )


def test_unknown_status_value_is_invalid_filter_value(api):
    nope = [{"key": "Status", "value": "Nope"}]
    assert_error("InvalidFilterValue", api.list_commands, Filters=nope)
    assert_error("InvalidFilterValue", api.list_command_invocations, Filters=nope)


def test_bad_execution_stage_and_timestamp_values_are_invalid_filter_value(api):
    assert_error(
        "InvalidFilterValue", api.list_commands, Filters=[{"key": "ExecutionStage", "value": "Done"}]
    )
    assert_error(
        "InvalidFilterValue", api.list_commands, Filters=[{"key": "InvokedAfter", "value": "yesterday"}]
    )


def test_six_filters_is_a_validation_error(api):
    filters = [{"key": "DocumentName", "value": DOCUMENT}] * 6
    assert_error("ValidationException", api.list_commands, Filters=filters)


def test_instance_id_with_status_pending_is_a_validation_error(api, node):
    assert_error(
        "ValidationException",
        api.list_commands,
        InstanceId=node,
        Filters=[{"key": "Status", "value": "Pending"}],
    )


# --------------------------------------------------------------------------- GetCommandInvocation / CancelCommand


def test_get_invocation_of_an_unknown_command_is_invocation_does_not_exist(api, node):
    assert_error(
        "InvocationDoesNotExist",
        api.get_command_invocation,
        CommandId=UNKNOWN_COMMAND,
        InstanceId=node,
    )


def test_get_invocation_on_a_node_the_command_was_not_sent_to(api, finished_command, stopped_node):
    assert_error(
        "InvocationDoesNotExist",
        api.get_command_invocation,
        CommandId=finished_command,
        InstanceId=stopped_node,
    )


def test_get_invocation_of_a_malformed_node_is_invalid_instance_id(api, finished_command):
    assert_error(
        "InvalidInstanceId",
        api.get_command_invocation,
        CommandId=finished_command,
        InstanceId="node-1",
    )


def test_list_command_invocations_of_an_unknown_command_is_empty_not_an_error(fleet):
    listed = fleet.ssm.list_command_invocations(CommandId=UNKNOWN_COMMAND)
    assert listed["CommandInvocations"] == []
    assert not listed.get("NextToken")


def test_get_invocation_with_an_unknown_plugin_is_invalid_plugin_name(api, node, finished_command):
    assert_error(
        "InvalidPluginName",
        api.get_command_invocation,
        CommandId=finished_command,
        InstanceId=node,
        PluginName="aws:nope",
    )


def test_get_invocation_with_the_real_plugin_name_works(fleet, node, finished_command):
    inv = fleet.ssm.get_command_invocation(
        CommandId=finished_command, InstanceId=node, PluginName="aws:runShellScript"
    )
    assert (inv["Status"], inv["PluginName"]) == ("Success", "aws:runShellScript")


def test_cancel_of_an_unknown_command_is_invalid_command_id(api):
    assert_error("InvalidCommandId", api.cancel_command, CommandId=UNKNOWN_COMMAND)


# --------------------------------------------------------------------------- activations / instances


def test_delete_of_a_malformed_activation_is_invalid_activation_id(api):
    assert_error("InvalidActivationId", api.delete_activation, ActivationId="nope")


def test_describe_instance_information_max_results_4_is_a_validation_error(api):
    assert_error("ValidationException", api.describe_instance_information, MaxResults=4)


def test_describe_instance_information_bad_ping_status_is_invalid_filter_value(api):
    assert_error(
        "InvalidInstanceInformationFilterValue",
        api.describe_instance_information,
        Filters=[{"Key": "PingStatus", "Values": ["Sleepy"]}],
    )


def test_describe_activations_bad_filter_key_is_invalid_filter(api):
    assert_error(
        "InvalidFilter",
        api.describe_activations,
        Filters=[{"FilterKey": "Color", "FilterValues": ["blue"]}],
    )


# --------------------------------------------------------------------------- raw HTTP


@pytest.mark.parametrize(
    "target,body,expected",
    [
        ("AmazonSSM.ListCommands", b"{not json", "SerializationException"),
        ("AmazonSSM.ListCommands", b'{"MaxResults": "ten"}', "SerializationException"),
        ("AmazonSSM.SendCommand", b"[1, 2]", "SerializationException"),
        ("AmazonSSM.DescribeParameters", b"{}", "UnknownOperationException"),
        ("SomethingElse.ListCommands", b"{}", "UnknownOperationException"),
        (None, b"{}", "UnknownOperationException"),
    ],
    ids=["malformed-json", "wrong-type", "not-an-object", "unknown-op", "wrong-prefix", "no-target"],
)
def test_wire_errors_are_aws_json(fleet, target, body, expected):
    status, lower, payload = fleet.raw(target, body)

    assert status == 400
    assert lower.get("content-type", "").startswith("application/x-amz-json-1.1")
    assert "x-amzn-requestid" in lower
    document = json.loads(payload)  # JSON, never an HTML error page
    assert document["__type"] == expected
    assert lower.get("x-amzn-errortype") in (None, expected)
    assert isinstance(document.get("Message"), str) and document["Message"]


def test_raw_request_with_an_empty_body_is_an_empty_request(fleet):
    status, lower, payload = fleet.raw("AmazonSSM.ListCommands", b"")
    assert status == 200
    assert lower.get("content-type", "").startswith("application/x-amz-json-1.1")
    assert "Commands" in json.loads(payload)
