"""Custom Command documents through boto3 and the AWS CLI: create (JSON and YAML), run with
parameters, per-step plugins, preconditions, 168/169, versions, listing, and the error codes."""

from __future__ import annotations

import json
import uuid

import pytest
from botocore.exceptions import ClientError

FAST_WAITER = {"Delay": 1, "MaxAttempts": 30}

TWO_STEPS_YAML = """\
schemaVersion: '2.2'
description: Greets, then counts.
parameters:
  greeting:
    type: String
    default: hello
    allowedValues: [hello, hi]
  count:
    type: String
    description: How many numbers
    allowedPattern: '^[0-9]+$'
mainSteps:
  - action: aws:runShellScript
    name: greet
    inputs:
      runCommand: ['echo {{ greeting }}']
  - action: aws:runPowerShellScript
    name: windowsOnly
    precondition:
      StringEquals: [platformType, Windows]
    inputs:
      runCommand: ['Write-Output nope']
  - action: aws:runShellScript
    name: count
    inputs:
      runCommand: ['seq {{ count }}']
"""


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def shell_doc(*lines: str) -> str:
    return json.dumps(
        {
            "schemaVersion": "2.2",
            "mainSteps": [
                {"action": "aws:runShellScript", "name": f"step{i}", "inputs": {"runCommand": [line]}}
                for i, line in enumerate(lines, 1)
            ],
        }
    )


def error_code(excinfo) -> str:
    return excinfo.value.response["Error"]["Code"]


def plugins(ssm, command_id: str) -> list[dict]:
    invs = ssm.list_command_invocations(CommandId=command_id, Details=True)["CommandInvocations"]
    assert len(invs) == 1, invs
    return invs[0]["CommandPlugins"]


def test_yaml_document_runs_step_by_step(fleet, node, ssm):
    name = unique("Greet")
    created = ssm.create_document(
        Name=name, Content=TWO_STEPS_YAML, DocumentType="Command", DocumentFormat="YAML"
    )["DocumentDescription"]
    assert created["Status"] == "Creating"
    assert created["HashType"] == "Sha256" and len(created["Hash"]) == 64
    assert created["SchemaVersion"] == "2.2"
    assert created["PlatformTypes"] == ["Windows", "Linux", "MacOS"]
    params = {p["Name"]: p for p in created["Parameters"]}
    assert params["greeting"]["DefaultValue"] == "hello"
    assert "DefaultValue" not in params["count"]
    assert ssm.describe_document(Name=name)["Document"]["Status"] == "Active"

    command_id = ssm.send_command(
        InstanceIds=[node], DocumentName=name, Parameters={"greeting": ["hi"], "count": ["2"]}
    )["Command"]["CommandId"]
    # The waiter calls GetCommandInvocation without PluginName: fine for a multi-step document.
    ssm.get_waiter("command_executed").wait(
        CommandId=command_id, InstanceId=node, WaiterConfig=FAST_WAITER
    )
    steps = plugins(ssm, command_id)
    assert [p["Name"] for p in steps] == ["greet", "windowsOnly", "count"]
    assert (steps[0]["Status"], steps[0]["Output"]) == ("Success", "hi\n")
    assert (steps[1]["Status"], steps[1]["StatusDetails"], steps[1]["ResponseCode"]) == (
        "Success",
        "Skipped",
        0,
    )
    assert "unsatisfied preconditions" in steps[1]["Output"]
    count = ssm.get_command_invocation(CommandId=command_id, InstanceId=node, PluginName="count")
    assert (count["PluginName"], count["StandardOutputContent"]) == ("count", "1\n2\n")

    for bad in ({"count": ["x"]}, {"greeting": ["hey"], "count": ["1"]}, {}, {"count": ["1"], "x": ["1"]}):
        with pytest.raises(ssm.exceptions.InvalidParameters):
            ssm.send_command(InstanceIds=[node], DocumentName=name, Parameters=bad)


def test_exit_168_and_169_skip_the_rest(fleet, node, ssm):
    for code, status in (("168", "Success"), ("169", "Failed")):
        name = unique(f"Stop{code}")
        ssm.create_document(Name=name, Content=shell_doc(f"exit {code}", "echo never"))
        command_id = ssm.send_command(InstanceIds=[node], DocumentName=name)["Command"]["CommandId"]
        inv = fleet.wait_invocation(command_id, node)
        assert inv["Status"] == status
        first, second = plugins(ssm, command_id)
        assert (first["Status"], first["ResponseCode"]) == (status, int(code))
        assert (second["Status"], second["StatusDetails"]) == ("Success", "Skipped")
        assert "exit condition" in second["Output"]


def test_versions_and_default_version(fleet, node, ssm):
    name = unique("Versioned")
    ssm.create_document(Name=name, Content=shell_doc("echo one"), VersionName="v1")
    updated = ssm.update_document(Name=name, Content=shell_doc("echo two"), DocumentVersion="$LATEST")
    d = updated["DocumentDescription"]
    assert (d["DocumentVersion"], d["DefaultVersion"], d["LatestVersion"]) == ("2", "1", "2")
    with pytest.raises(ssm.exceptions.DuplicateDocumentContent):
        ssm.update_document(Name=name, Content=shell_doc("echo two"))

    def run(**kwargs) -> str:
        command_id = ssm.send_command(InstanceIds=[node], DocumentName=name, **kwargs)["Command"][
            "CommandId"
        ]
        return fleet.wait_invocation(command_id, node)["StandardOutputContent"]

    assert run() == "one\n"
    assert run(DocumentVersion="$LATEST") == "two\n"
    ssm.update_document_default_version(Name=name, DocumentVersion="2")
    assert run(DocumentVersion="$DEFAULT") == "two\n"
    got = ssm.get_document(Name=name, VersionName="v1", DocumentFormat="YAML")
    assert (got["DocumentVersion"], got["DocumentFormat"]) == ("1", "YAML")
    assert "echo one" in got["Content"]
    with pytest.raises(ssm.exceptions.InvalidDocumentVersion):
        ssm.describe_document(Name=name, DocumentVersion="9")
    ssm.delete_document(Name=name)
    with pytest.raises(ssm.exceptions.InvalidDocument):
        ssm.describe_document(Name=name)


def test_list_documents(fleet, ssm):
    prefix = unique("Listed")
    for suffix in ("a", "b", "c"):
        ssm.create_document(Name=f"{prefix}-{suffix}", Content=shell_doc(f"echo {suffix}"))
    paginator = ssm.get_paginator("list_documents")
    pages = paginator.paginate(
        Filters=[{"Key": "Owner", "Values": ["Self"]}, {"Key": "Name", "Values": [prefix]}],
        PaginationConfig={"PageSize": 2},
    )
    names = [d["Name"] for page in pages for d in page["DocumentIdentifiers"]]
    assert names == [f"{prefix}-a", f"{prefix}-b", f"{prefix}-c"]
    amazon = ssm.list_documents(Filters=[{"Key": "Owner", "Values": ["Amazon"]}])
    assert [(d["Name"], d["Owner"]) for d in amazon["DocumentIdentifiers"]] == [
        ("AWS-RunShellScript", "Amazon")
    ]
    with pytest.raises(ssm.exceptions.InvalidFilterKey):
        ssm.list_documents(Filters=[{"Key": "Colour", "Values": ["red"]}])
    with pytest.raises(ssm.exceptions.InvalidNextToken):
        ssm.list_documents(NextToken="not-a-token")


def test_document_errors(fleet, ssm):
    name = unique("Errors")
    ssm.create_document(Name=name, Content=shell_doc("true"))
    with pytest.raises(ssm.exceptions.DocumentAlreadyExists):
        ssm.create_document(Name=name, Content=shell_doc("true"))
    with pytest.raises(ssm.exceptions.InvalidDocumentContent):
        ssm.create_document(Name=unique("Bad"), Content="{not json")
    with pytest.raises(ssm.exceptions.InvalidDocumentSchemaVersion):
        ssm.create_document(Name=unique("Old"), Content='{"schemaVersion": "1.0"}')
    with pytest.raises(ssm.exceptions.MaxDocumentSizeExceeded):
        ssm.create_document(Name=unique("Big"), Content=shell_doc("x" * 70_000))
    with pytest.raises(ClientError) as excinfo:
        ssm.create_document(Name=unique("AWS-Mine"), Content=shell_doc("true"))
    assert error_code(excinfo) == "ValidationException"
    with pytest.raises(ssm.exceptions.InvalidDocumentType):
        ssm.create_document(Name=unique("Runbook"), Content=shell_doc("true"), DocumentType="Automation")
    with pytest.raises(ssm.exceptions.InvalidDocumentOperation):
        ssm.delete_document(Name="AWS-RunShellScript")
    with pytest.raises(ssm.exceptions.InvalidDocument):
        ssm.get_document(Name=unique("Missing"))


def test_cli_create_and_run(fleet, node, tmp_path):
    name = unique("Cli")
    path = tmp_path / "doc.yaml"
    path.write_text(TWO_STEPS_YAML)
    created = fleet.aws_json(
        "create-document", "--name", name, "--document-type", "Command",
        "--document-format", "YAML", "--content", f"file://{path}",
    )
    assert created["DocumentDescription"]["Name"] == name
    sent = fleet.aws_json(
        "send-command", "--instance-ids", node, "--document-name", name,
        "--parameters", "count=3",
    )
    command_id = sent["Command"]["CommandId"]
    fleet.wait_invocation(command_id, node)
    out = fleet.aws_json(
        "get-command-invocation", "--command-id", command_id, "--instance-id", node,
        "--plugin-name", "count",
    )
    assert out["StandardOutputContent"] == "1\n2\n3\n"
