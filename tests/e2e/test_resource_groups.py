"""Resource groups through boto3 and the AWS CLI: the Resource Groups API subset (rest-json, signed
for `resource-groups`) defining tag-query groups of managed nodes, and SendCommand with
`Key=resource-groups:Name` resolving the group's members when the command is sent.

The fleet is shared by the whole session, so every group query also asks for a tag key unique to
its test, and the nodes here are this module's own three agents."""

from __future__ import annotations

import json
import subprocess
import uuid

import pytest
from botocore.exceptions import ClientError

from conftest import DOCUMENT, REGION, aws_cli, make_client

MI = "ManagedInstance"
NODE_TYPE = "AWS::SSM::ManagedInstance"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def query(*filters: tuple[str, list[str]], types=(NODE_TYPE,)) -> dict:
    return {
        "Type": "TAG_FILTERS_1_0",
        "Query": json.dumps(
            {
                "ResourceTypeFilters": list(types),
                "TagFilters": [{"Key": k, "Values": v} for k, v in filters],
            }
        ),
    }


@pytest.fixture(scope="module")
def rg(fleet):
    return make_client(fleet.endpoint, credentials=fleet.credentials, service="resource-groups")


@pytest.fixture(scope="module")
def trio(fleet) -> list[str]:
    """Three agents of this module's own."""
    return sorted(a.instance_id for a in fleet.add_agents(3))


def tag(ssm, node: str, **tags: str) -> None:
    ssm.add_tags_to_resource(
        ResourceType=MI, ResourceId=node, Tags=[{"Key": k, "Value": v} for k, v in tags.items()]
    )


def error(call, **kwargs) -> tuple[str, int]:
    with pytest.raises(ClientError) as info:
        call(**kwargs)
    r = info.value.response
    return r["Error"]["Code"], r["ResponseMetadata"]["HTTPStatusCode"]


def send_to_group(ssm, name: str, extra: list[dict] | None = None) -> dict:
    targets = [{"Key": "resource-groups:Name", "Values": [name]}, *(extra or [])]
    return ssm.send_command(
        Targets=targets, DocumentName=DOCUMENT, Parameters={"commands": ["echo $AWS_SSM_INSTANCE_ID"]}
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


def arn(node: str) -> str:
    return f"arn:aws:ssm:{REGION}:000000000000:managed-instance/{node}"


def test_send_by_group_follows_the_group(fleet, ssm, rg, trio):
    a, b, c = trio
    mark = unique("rgtest")
    tag(ssm, a, env="prod", **{mark: "1"})
    tag(ssm, b, env="prod", **{mark: "1"})
    tag(ssm, c, env="stage", **{mark: "1"})
    name = unique("web-tier")
    created = rg.create_group(
        Name=name, Description="prod nodes", ResourceQuery=query(("env", ["prod"]), (mark, []))
    )
    assert created["Group"] == {
        "GroupArn": f"arn:aws:resource-groups:{REGION}:000000000000:group/{name}",
        "Name": name,
        "Description": "prod nodes",
    }
    assert created["ResourceQuery"] == query(("env", ["prod"]), (mark, []))

    sent = [{"Key": "resource-groups:Name", "Values": [name]}]
    cmd = send_to_group(ssm, name)
    assert cmd["TargetCount"] == 2
    assert cmd["Targets"] == sent and cmd["InstanceIds"] == []
    assert ran_on(fleet, cmd) == [a, b]
    listed = ssm.list_commands(CommandId=cmd["CommandId"])["Commands"][0]
    assert listed["Targets"] == sent

    members = rg.list_group_resources(Group=name)
    assert [r["Identifier"] for r in members["Resources"]] == [
        {"ResourceArn": arn(n), "ResourceType": NODE_TYPE} for n in (a, b)
    ]
    assert members["ResourceIdentifiers"] == [r["Identifier"] for r in members["Resources"]]

    # The group by ARN works too; resource-groups:ResourceTypeFilters narrows by type.
    assert rg.get_group(Group=created["Group"]["GroupArn"])["Group"]["Name"] == name
    typed = send_to_group(
        ssm, name, [{"Key": "resource-groups:ResourceTypeFilters", "Values": [NODE_TYPE]}]
    )
    assert typed["TargetCount"] == 2
    assert ran_on(fleet, typed) == [a, b]
    ec2_only = send_to_group(
        ssm, name, [{"Key": "resource-groups:ResourceTypeFilters", "Values": ["AWS::EC2::Instance"]}]
    )
    assert (ec2_only["TargetCount"], ec2_only["StatusDetails"]) == (0, "NoInstancesInTag")

    # Update the query: the next send follows it; commands already sent keep their nodes.
    updated = rg.update_group_query(Group=name, ResourceQuery=query(("env", ["stage"]), (mark, [])))
    assert updated["GroupQuery"] == {
        "GroupName": name,
        "ResourceQuery": query(("env", ["stage"]), (mark, [])),
    }
    assert rg.get_group_query(Group=name)["GroupQuery"] == updated["GroupQuery"]
    again = send_to_group(ssm, name)
    assert again["TargetCount"] == 1
    assert ran_on(fleet, again) == [c]
    assert ssm.list_commands(CommandId=cmd["CommandId"])["Commands"][0]["TargetCount"] == 2

    # A group that matches nothing: TargetCount 0, as with an empty tag target.
    rg.update_group_query(Group=name, ResourceQuery=query(("env", ["nowhere"]), (mark, [])))
    empty = send_to_group(ssm, name)
    assert (empty["Status"], empty["StatusDetails"], empty["TargetCount"]) == (
        "Success",
        "NoInstancesInTag",
        0,
    )

    # Delete it: the documented errors follow.
    deleted = rg.delete_group(Group=name)
    assert deleted["Group"]["Name"] == name
    assert error(rg.get_group, Group=name) == ("NotFoundException", 404)
    assert error(rg.delete_group, Group=name) == ("NotFoundException", 404)
    with pytest.raises(ClientError) as info:
        send_to_group(ssm, name)
    assert info.value.response["Error"]["Code"] == "InvalidTarget"


def aws(fleet, *args: str) -> subprocess.CompletedProcess:
    argv = [aws_cli(), *args, "--endpoint-url", fleet.endpoint, "--region", REGION, "--output", "json"]
    return subprocess.run(argv, env=fleet.cli_env, capture_output=True, text=True, timeout=150)


def aws_json(fleet, *args: str) -> dict:
    r = aws(fleet, *args)
    assert r.returncode == 0, f"aws {' '.join(args)} failed ({r.returncode}):\n{r.stderr}"
    return json.loads(r.stdout) if r.stdout.strip() else {}


def test_cli(fleet, ssm, trio):
    a, b, c = trio
    mark = unique("rgcli")
    tag(ssm, a, **{mark: "web"})
    tag(ssm, c, **{mark: "web"})
    name = unique("cli-group")
    q = json.dumps(query((mark, ["web"])))
    created = aws_json(fleet, "resource-groups", "create-group", "--name", name, "--resource-query", q)
    assert created["Group"]["Name"] == name
    sent = aws_json(
        fleet, "ssm", "send-command", "--document-name", DOCUMENT,
        "--targets", f"Key=resource-groups:Name,Values={name}",
        "--parameters", "commands=echo $AWS_SSM_INSTANCE_ID",
    )["Command"]
    assert sent["TargetCount"] == 2
    assert sent["Targets"] == [{"Key": "resource-groups:Name", "Values": [name]}]
    assert ran_on(fleet, sent) == [a, c]
    got = aws_json(fleet, "resource-groups", "get-group-query", "--group", name)
    assert json.loads(got["GroupQuery"]["ResourceQuery"]["Query"])["TagFilters"] == [
        {"Key": mark, "Values": ["web"]}
    ]
    names = [g["GroupName"] for g in aws_json(fleet, "resource-groups", "list-groups")["GroupIdentifiers"]]
    assert name in names
    members = aws_json(fleet, "resource-groups", "list-group-resources", "--group", name)
    assert [r["Identifier"]["ResourceArn"] for r in members["Resources"]] == [arn(a), arn(c)]
    aws_json(fleet, "resource-groups", "delete-group", "--group", name)
    gone = aws(fleet, "resource-groups", "get-group", "--group", name)
    assert gone.returncode != 0 and "NotFoundException" in gone.stderr, gone.stderr
    refused = aws(
        fleet, "ssm", "send-command", "--document-name", DOCUMENT,
        "--targets", f"Key=resource-groups:Name,Values={name}",
        "--parameters", "commands=true",
    )
    assert refused.returncode != 0 and "InvalidTarget" in refused.stderr, refused.stderr


def test_paging(fleet, ssm, rg, trio):
    mark = unique("rgpage")
    for n in trio:
        tag(ssm, n, **{mark: "x"})
    prefix = unique("page")
    names = [f"{prefix}-{i}" for i in range(3)]
    for n in names:
        rg.create_group(Name=n, ResourceQuery=query((mark, ["x"]), types=("AWS::AllSupported",)))

    seen, token = [], None
    while True:
        page = rg.list_groups(MaxResults=1, **({"NextToken": token} if token else {}))
        assert len(page["GroupIdentifiers"]) <= 1
        assert [g["Name"] for g in page["Groups"]] == [g["GroupName"] for g in page["GroupIdentifiers"]]
        seen += [g["GroupName"] for g in page["GroupIdentifiers"]]
        token = page.get("NextToken")
        if not token:
            break
    assert [s for s in seen if s.startswith(prefix)] == names
    assert seen == sorted(seen)
    by_paginator = [
        g["GroupName"]
        for p in rg.get_paginator("list_groups").paginate(PaginationConfig={"PageSize": 2})
        for g in p["GroupIdentifiers"]
    ]
    assert by_paginator == seen
    filtered = rg.list_groups(Filters=[{"Name": "resource-type", "Values": ["AWS::AllSupported"]}])
    assert names == [g["GroupName"] for g in filtered["GroupIdentifiers"] if g["GroupName"].startswith(prefix)]

    def walk(call, key, **kwargs):
        out, token = [], None
        while True:
            page = call(MaxResults=1, **kwargs, **({"NextToken": token} if token else {}))
            assert len(page[key]) <= 1
            out += page[key]
            token = page.get("NextToken")
            if not token:
                return out

    members = walk(rg.list_group_resources, "Resources", Group=names[0])
    assert [m["Identifier"]["ResourceArn"] for m in members] == [arn(n) for n in trio]
    found = walk(rg.search_resources, "ResourceIdentifiers", ResourceQuery=query((mark, ["x"])))
    assert [f["ResourceArn"] for f in found] == [arn(n) for n in trio]
    # A token belongs to its query.
    first = rg.search_resources(ResourceQuery=query((mark, ["x"])), MaxResults=1)
    assert error(
        rg.search_resources,
        ResourceQuery=query((mark, ["y"])),
        MaxResults=1,
        NextToken=first["NextToken"],
    ) == ("BadRequestException", 400)
    for n in names:
        rg.delete_group(Group=n)


def test_errors(fleet, rg):
    name = unique("dup")
    ok = query(("env", ["prod"]))
    rg.create_group(Name=name, ResourceQuery=ok)
    assert error(rg.create_group, Name=name, ResourceQuery=ok) == ("BadRequestException", 400)
    assert error(rg.get_group, Group=unique("nope")) == ("NotFoundException", 404)
    assert error(rg.get_group_query, Group=unique("nope")) == ("NotFoundException", 404)
    assert error(rg.update_group_query, Group=unique("nope"), ResourceQuery=ok) == ("NotFoundException", 404)
    assert error(rg.list_group_resources, Group=unique("nope")) == ("NotFoundException", 404)
    bad_json = {"Type": "TAG_FILTERS_1_0", "Query": "{not json"}
    assert error(rg.create_group, Name=unique("bad"), ResourceQuery=bad_json) == ("BadRequestException", 400)
    assert error(rg.update_group_query, Group=name, ResourceQuery=bad_json) == ("BadRequestException", 400)
    ec2 = query(("env", ["prod"]), types=("AWS::EC2::Instance",))
    assert error(rg.create_group, Name=unique("ec2"), ResourceQuery=ec2) == ("BadRequestException", 400)
    assert error(rg.search_resources, ResourceQuery=ec2) == ("BadRequestException", 400)
    stack = {"Type": "CLOUDFORMATION_STACK_1_0", "Query": json.dumps({"StackIdentifier": "arn:x"})}
    assert error(rg.create_group, Name=unique("cfn"), ResourceQuery=stack) == ("BadRequestException", 400)
    assert error(rg.create_group, Name="AWS-reserved", ResourceQuery=ok) == ("BadRequestException", 400)
    assert error(rg.list_groups, NextToken="Zm9vYmFy") == ("BadRequestException", 400)
    # The group made first is untouched by the refused update.
    assert rg.get_group_query(Group=name)["GroupQuery"]["ResourceQuery"] == ok
    rg.delete_group(Group=name)


def test_unsigned_request_is_refused(fleet):
    import urllib.error
    import urllib.request

    req = urllib.request.Request(
        fleet.endpoint + "/groups", data=b'{"Name":"x"}', method="POST",
        headers={"Content-Type": "application/json"},
    )
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(req, timeout=10)
    assert info.value.headers["x-amzn-errortype"] == "MissingAuthenticationTokenException"
    assert info.value.code == 403  # rest-json's status for a failed signature check


def test_a_wrong_secret_is_refused_with_403(fleet):
    wrong_secret = {**fleet.credentials, "AWS_SECRET_ACCESS_KEY": "not-the-secret-" + "x" * 25}
    wrong = make_client(fleet.endpoint, credentials=wrong_secret, service="resource-groups")
    with pytest.raises(ClientError) as info:
        wrong.list_groups()
    assert info.value.response["Error"]["Code"] == "InvalidSignatureException"
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
