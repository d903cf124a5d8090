"""S3 output: with `OutputS3BucketName`, each step's full stdout and stderr are stored at
amazon-ssm-agent's key layout (`<prefix>/<CommandId>/<InstanceId>/awsrunShellScript/
0.awsrunShellScript/stdout|stderr`, empty streams not uploaded) in a real S3-protocol server
(s3s-fs, started by the session), and the invocation records point at them. The server uploads
from a queue in its store, so an upload pending when it is killed happens after its restart.
Objects are read back with boto3's S3 client."""

from __future__ import annotations

import hashlib
import uuid
from urllib.parse import urlsplit

import pytest
from botocore.exceptions import ClientError

from conftest import (
    S3Store,
    make_client,
    poll,
    reserve_port,
    server_env,
    start_server,
    wait_invocation,
)

PLUGIN_DIR = "awsrunShellScript/0.awsrunShellScript"
# 200,000 numbered lines: 1,288,895 bytes, far past the 24,000 characters the API shows.
BIG = "seq 200000"
BIG_TEXT = "".join(f"{i}\n" for i in range(1, 200001))


@pytest.fixture(scope="module")
def s3(fleet):
    return fleet.s3.client()


def new_bucket(s3) -> str:
    name = f"fleet-{uuid.uuid4().hex[:16]}"
    s3.create_bucket(Bucket=name)
    return name


def key_of(prefix: str, command_id: str, node: str, stream: str) -> str:
    return "/".join(p for p in (prefix, command_id, node, PLUGIN_DIR, stream) if p)


def read_object(s3, bucket: str, key: str) -> bytes | None:
    try:
        return s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except ClientError as e:
        if e.response["Error"]["Code"] in ("NoSuchKey", "404"):
            return None
        raise


def wait_object(s3, bucket: str, key: str, timeout: float = 30.0) -> bytes:
    return poll(f"s3://{bucket}/{key}", lambda: read_object(s3, bucket, key), timeout, interval=0.2)


def object_of(url: str) -> tuple[str, str]:
    """(bucket, key) of a path-style object URL."""
    path = urlsplit(url).path.lstrip("/")
    bucket, _, key = path.partition("/")
    return bucket, key


def test_three_nodes_store_their_full_output_at_the_agent_keys_and_both_apis_point_at_it(
    fleet, node, two_agents, s3
):
    bucket = new_bucket(s3)
    nodes = [node] + [a.instance_id for a in two_agents]
    sent = fleet.send(
        nodes,
        [BIG, "echo to-stderr >&2"],
        OutputS3BucketName=bucket,
        OutputS3KeyPrefix="runs/today",
    )
    command_id = sent["CommandId"]
    assert (sent["OutputS3BucketName"], sent["OutputS3KeyPrefix"]) == (bucket, "runs/today")
    fleet.wait_command(command_id, timeout=60)
    for n in nodes:
        out_key = key_of("runs/today", command_id, n, "stdout")
        err_key = key_of("runs/today", command_id, n, "stderr")
        stdout = wait_object(s3, bucket, out_key)
        assert len(stdout) == len(BIG_TEXT.encode()) > 1_000_000
        assert hashlib.sha256(stdout).hexdigest() == hashlib.sha256(BIG_TEXT.encode()).hexdigest()
        assert wait_object(s3, bucket, err_key) == b"to-stderr\n"

        inv = fleet.ssm.get_command_invocation(CommandId=command_id, InstanceId=n)
        assert inv["Status"] == "Success"
        assert len(inv["StandardOutputContent"]) == 24_000, "the API still shows the beginning"
        expected = {
            "StandardOutputUrl": f"{fleet.s3.endpoint}/{bucket}/{out_key}",
            "StandardErrorUrl": f"{fleet.s3.endpoint}/{bucket}/{err_key}",
        }
        assert {k: inv[k] for k in expected} == expected
        # The URL names the object: read through it with the S3 client.
        assert s3.get_object(
            Bucket=object_of(inv["StandardOutputUrl"])[0], Key=object_of(inv["StandardOutputUrl"])[1]
        )["Body"].read() == stdout

        (listed,) = fleet.ssm.list_command_invocations(
            CommandId=command_id, InstanceId=n, Details=True
        )["CommandInvocations"]
        assert (listed["StandardOutputUrl"], listed["StandardErrorUrl"]) == (
            expected["StandardOutputUrl"],
            expected["StandardErrorUrl"],
        )
        (plugin,) = listed["CommandPlugins"]
        assert plugin["StandardOutputUrl"] == expected["StandardOutputUrl"]
        assert plugin["StandardErrorUrl"] == expected["StandardErrorUrl"]
        assert plugin["OutputS3BucketName"] == bucket
        assert plugin["OutputS3KeyPrefix"] == f"runs/today/{command_id}/{n}/awsrunShellScript"


def test_empty_streams_are_not_uploaded_and_no_prefix_starts_at_the_command_id(fleet, node, s3):
    bucket = new_bucket(s3)
    command_id = fleet.run(node, ["echo only-stdout"], OutputS3BucketName=bucket)
    fleet.wait_command(command_id)
    assert wait_object(s3, bucket, key_of("", command_id, node, "stdout")) == b"only-stdout\n"
    # Give the uploader the time it took for stdout, then check nothing else is there.
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
    assert keys == [f"{command_id}/{node}/{PLUGIN_DIR}/stdout"], keys


def test_a_bucket_that_does_not_exist_is_invalid_output_folder(fleet, node):
    with pytest.raises(ClientError) as info:
        fleet.ssm.send_command(
            InstanceIds=[node],
            DocumentName="AWS-RunShellScript",
            Parameters={"commands": ["true"]},
            OutputS3BucketName=f"missing-{uuid.uuid4().hex[:12]}",
        )
    err = info.value.response["Error"]
    assert err["Code"] == "InvalidOutputFolder", err
    assert "doesn't exist" in err["Message"]


def test_without_a_bucket_the_urls_are_empty(fleet, node):
    command_id = fleet.run(node, ["echo no-bucket"])
    fleet.wait_command(command_id)
    inv = fleet.ssm.get_command_invocation(CommandId=command_id, InstanceId=node)
    assert (inv["StandardOutputUrl"], inv["StandardErrorUrl"]) == ("", "")
    (listed,) = fleet.ssm.list_command_invocations(CommandId=command_id, Details=True)[
        "CommandInvocations"
    ]
    assert listed["StandardOutputUrl"] == ""
    assert listed["CommandPlugins"][0]["OutputS3KeyPrefix"] == ""


def test_an_upload_pending_when_the_server_is_killed_happens_after_its_restart(fleet, tmp_path):
    """The S3 store is down when the command ends (the upload fails and is retried; the
    invocation is Success all the same); the server is killed with SIGKILL; the store comes up;
    the restarted server uploads the output."""
    held = reserve_port()  # refuses connections until the S3 server takes the port
    port = held.getsockname()[1]
    endpoint = f"http://127.0.0.1:{port}"
    keys = {"AWS_ACCESS_KEY_ID": "S3TESTKEY", "AWS_SECRET_ACCESS_KEY": "s3-restart-secret"}
    data = tmp_path / "data"
    args = ["--s3-endpoint", endpoint]
    first = start_server(
        fleet.binary, data, tmp_path, "s3-first", local_node=True,
        env=server_env(keys), extra_args=args,
    )
    ssm = make_client(first.endpoint)
    bucket = f"fleet-{uuid.uuid4().hex[:16]}"
    # The bucket cannot be checked while the store is down: the command is accepted.
    command_id = ssm.send_command(
        InstanceIds=[first.node_id],
        DocumentName="AWS-RunShellScript",
        Parameters={"commands": ["seq 30000"]},
        OutputS3BucketName=bucket,
    )["Command"]["CommandId"]
    inv = wait_invocation(ssm, command_id, first.node_id)
    assert inv["Status"] == "Success", "a failing upload does not change the status"
    poll("a failed upload", lambda: "cannot upload output to S3; retrying" in first.proc.stderr_tail(400), 30)
    first.proc.popen.kill()
    first.proc.popen.wait(10)

    held.close()
    store = S3Store(tmp_path / "s3", tmp_path, "s3s-fs-restart", port=port, keys=keys)
    try:
        s3 = store.client()
        second = start_server(
            fleet.binary, data, tmp_path, "s3-second", local_node=True,
            env=server_env(keys), extra_args=args, admin=first.credentials,
        )
        try:
            s3.create_bucket(Bucket=bucket)
            body = wait_object(s3, bucket, key_of("", command_id, first.node_id, "stdout"), 60)
            assert body == "".join(f"{i}\n" for i in range(1, 30001)).encode()
            poll("the upload's log line", lambda: "output uploaded to S3" in second.proc.stderr_tail(400), 5)
        finally:
            second.proc.stop()
    finally:
        store.stop()
