"""Tags and tag targets through boto3 and the AWS CLI: tagging managed nodes, SendCommand with
`tag:<key>` / `tag-key` targets (values ORed, targets ANDed), NoInstancesInTag, DescribeInstanceInformation
tag filters and the error codes.

The fleet is shared by the whole session, so every test tags with keys unique to it."""

from __future__ import annotations

import json
import uuid

import pytest
from botocore.exceptions import ClientError

from conftest import DOCUMENT

MI = "ManagedInstance"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def tag(ssm, node: str, **tags: str) -> None:
    ssm.add_tags_to_resource(
        ResourceType=MI, ResourceId=node, Tags=[{"Key": k, "Value": v} for k, v in tags.items()]
    )


def error_code(call, **kwargs) -> str:
    with pytest.raises(ClientError) as info:
        call(**kwargs)
    return info.value.response["Error"]["Code"]


def send_targets(ssm, targets: list[dict], commands=("echo $AWS_SSM_INSTANCE_ID",), **kwargs) -> dict:
    return ssm.send_command(
        Targets=targets, DocumentName=DOCUMENT, Parameters={"commands": list(commands)}, **kwargs
    )["Command"]


def ran_on(fleet, command: dict) -> list[str]:
    """Waits for every invocation of `command`; returns the nodes, checked through their stdout."""
    invs = fleet.ssm.list_command_invocations(CommandId=command["CommandId"])["CommandInvocations"]
    nodes = []
    for inv in invs:
        done = fleet.wait_invocation(command["CommandId"], inv["InstanceId"])
        assert done["Status"] == "Success", done
        assert done["StandardOutputContent"] == inv["InstanceId"] + "\n"
        nodes.append(inv["InstanceId"])
    return sorted(nodes)


def test_tag_operations(fleet, ssm, two_agents):
    node = two_agents[0].instance_id
    key = unique("team")
    tag(ssm, node, **{key: "a", f"{key}-x": ""})
    tag(ssm, node, **{key: "b"})  # overwrites
    listed = ssm.list_tags_for_resource(ResourceType=MI, ResourceId=node)["TagList"]
    assert {"Key": key, "Value": "b"} in listed
    assert {"Key": f"{key}-x", "Value": ""} in listed
    assert [t["Key"] for t in listed] == sorted(t["Key"] for t in listed)
    assert ssm.remove_tags_from_resource(ResourceType=MI, ResourceId=node, TagKeys=[f"{key}-x", "nope"])
    listed = ssm.list_tags_for_resource(ResourceType=MI, ResourceId=node)["TagList"]
    assert f"{key}-x" not in [t["Key"] for t in listed]


def test_tag_errors(fleet, ssm, two_agents):
    node = two_agents[1].instance_id
    add = ssm.add_tags_to_resource
    ok = [{"Key": "k", "Value": "v"}]
    assert error_code(add, ResourceType=MI, ResourceId="mi-0123456789abcdef0", Tags=ok) == "InvalidResourceId"
    assert error_code(add, ResourceType=MI, ResourceId="not-a-node", Tags=ok) == "InvalidResourceId"
    assert error_code(add, ResourceType="Document", ResourceId=DOCUMENT, Tags=ok) == "InvalidResourceType"
    assert error_code(add, ResourceType="PatchBaseline", ResourceId="pb-1", Tags=ok) == "InvalidResourceType"
    assert (
        error_code(add, ResourceType=MI, ResourceId=node, Tags=[{"Key": "k" * 129, "Value": "v"}])
        == "ValidationException"
    )
    assert (
        error_code(add, ResourceType=MI, ResourceId=node, Tags=[{"Key": "a#b", "Value": "v"}])
        == "ValidationException"
    )
    assert (
        error_code(add, ResourceType=MI, ResourceId=node, Tags=[{"Key": "AWS:x", "Value": "v"}])
        == "ValidationException"
    )
    many = [{"Key": unique("k"), "Value": "v"} for _ in range(51)]
    assert error_code(add, ResourceType=MI, ResourceId=node, Tags=many) == "TooManyTagsError"
    listed = ssm.list_tags_for_resource(ResourceType=MI, ResourceId=node)["TagList"]
    assert len(listed) < 51
    with pytest.raises(ClientError) as info:
        add(ResourceType=MI, ResourceId=node, Tags=[{"Key": "ok", "Value": "v" * 257}])
    assert info.value.response["Error"]["Message"].startswith(
        "1 validation error detected: Value '" + "v" * 257 + "' at 'tags.1.member.value'"
    )
    assert (
        error_code(ssm.list_tags_for_resource, ResourceType=MI, ResourceId="mi-0123456789abcdef0")
        == "InvalidResourceId"
    )


def test_tag_targets_or_and(fleet, ssm, node, two_agents):
    a, b = (x.instance_id for x in two_agents)
    role, team = unique("role"), unique("team")
    tag(ssm, node, **{role: "web"})
    tag(ssm, a, **{role: "db", team: "x"})
    tag(ssm, b, **{role: "cache"})

    c = send_targets(ssm, [{"Key": f"tag:{role}", "Values": ["web", "db"]}])
    assert (c["TargetCount"], c["InstanceIds"]) == (2, [])
    assert c["Targets"] == [{"Key": f"tag:{role}", "Values": ["web", "db"]}]
    assert ran_on(fleet, c) == sorted([node, a])

    c = send_targets(ssm, [{"Key": "tag-key", "Values": [team, "nope"]}])
    assert ran_on(fleet, c) == [a]

    c = send_targets(
        ssm,
        [{"Key": f"tag:{role}", "Values": ["web", "db", "cache"]}, {"Key": "tag-key", "Values": [team]}],
    )
    assert ran_on(fleet, c) == [a]
    done = fleet.wait_command(c["CommandId"])
    assert (done["Status"], done["TargetCount"], done["CompletedCount"]) == ("Success", 1, 1)

    c = send_targets(ssm, [{"Key": "InstanceIds", "Values": [node, b]}, {"Key": f"tag:{role}", "Values": ["cache"]}])
    assert ran_on(fleet, c) == [b]


def test_no_instances_in_tag(fleet, ssm):
    c = send_targets(ssm, [{"Key": f"tag:{unique('none')}", "Values": ["x"]}])
    assert (c["Status"], c["StatusDetails"], c["TargetCount"]) == ("Success", "NoInstancesInTag", 0)
    for status in ("NoInstancesInTag", "Success"):
        listed = ssm.list_commands(Filters=[{"key": "Status", "value": status}])["Commands"]
        assert c["CommandId"] in [x["CommandId"] for x in listed], status
    assert ssm.list_command_invocations(CommandId=c["CommandId"])["CommandInvocations"] == []


def test_target_errors(fleet, ssm, node):
    def code(targets):
        return error_code(send_targets, ssm=ssm, targets=targets)

    assert code([{"Key": "resource-groups:Name", "Values": ["g"]}]) == "InvalidTarget"
    assert code([{"Key": "Environment", "Values": ["prod"]}]) == "ValidationException"
    assert code([{"Key": "tag:role", "Values": []}]) == "ValidationException"
    assert code([{"Key": f"tag:k{i}", "Values": ["v"]} for i in range(6)]) == "ValidationException"
    assert code([{"Key": "tag:role", "Values": [f"v{i}" for i in range(51)]}]) == "ValidationException"
    assert code([{"Key": "InstanceIds", "Values": ["mi-0123456789abcdef0"]}]) == "InvalidInstanceId"
    both = error_code(
        ssm.send_command,
        InstanceIds=[node],
        Targets=[{"Key": "tag:role", "Values": ["web"]}],
        DocumentName=DOCUMENT,
        Parameters={"commands": ["true"]},
    )
    assert both == "ValidationException"


def test_describe_instance_information_tag_filters(fleet, ssm, two_agents):
    a, b = (x.instance_id for x in two_agents)
    key = unique("tier")
    tag(ssm, a, **{key: "front"})
    tag(ssm, b, **{key: "back"})

    def ids(filters):
        out = ssm.describe_instance_information(Filters=filters)["InstanceInformationList"]
        return sorted(i["InstanceId"] for i in out)

    assert ids([{"Key": f"tag:{key}", "Values": ["front"]}]) == [a]
    assert ids([{"Key": "tag-key", "Values": [key]}]) == sorted([a, b])
    assert ids([{"Key": f"tag:{key}", "Values": ["nope"]}]) == []
    assert (
        error_code(
            ssm.describe_instance_information,
            Filters=[{"Key": f"tag:{key}", "Values": ["front"]}, {"Key": "PingStatus", "Values": ["Online"]}],
        )
        == "ValidationException"
    )


def test_cli_walkthrough(fleet, two_agents):
    node = two_agents[0].instance_id
    role = unique("role")
    fleet.aws_json(
        "add-tags-to-resource", "--resource-type", MI, "--resource-id", node, "--tags", f"Key={role},Value=web"
    )
    listed = fleet.aws_json("list-tags-for-resource", "--resource-type", MI, "--resource-id", node)
    assert {"Key": role, "Value": "web"} in listed["TagList"]
    sent = fleet.aws_json(
        "send-command",
        "--document-name",
        DOCUMENT,
        "--targets",
        f"Key=tag:{role},Values=web",
        "--parameters",
        json.dumps({"commands": ["echo $AWS_SSM_INSTANCE_ID"]}),
    )["Command"]
    assert sent["TargetCount"] == 1
    assert ran_on(fleet, sent) == [node]

    # Two targets on the command line (ANDed), one with two values (ORed).
    both = fleet.aws_json(
        "send-command",
        "--document-name",
        DOCUMENT,
        "--targets",
        f"Key=tag:{role},Values=web,db",
        f"Key=tag-key,Values={role}",
        "--parameters",
        json.dumps({"commands": ["echo $AWS_SSM_INSTANCE_ID"]}),
    )["Command"]
    assert both["Targets"] == [
        {"Key": f"tag:{role}", "Values": ["web", "db"]},
        {"Key": "tag-key", "Values": [role]},
    ]
    assert ran_on(fleet, both) == [node]
