"""Signing and authorization as real clients see them: boto3 and the aws CLI with the right key, a
wrong secret, an unknown key, another region, no signature, a clock six minutes off, another
service; keys made with `fleetrun admin create-key` whose IAM policies allow only part of the API."""

from __future__ import annotations

import datetime
import hashlib
import hmac
import json
import subprocess
import urllib.error
import urllib.request

from conftest import DOCUMENT, REGION, make_client, signed_headers, wait_invocation
from test_errors import error_of


def post(endpoint: str, headers: dict, body: bytes) -> tuple[int, dict]:
    request = urllib.request.Request(endpoint + "/", data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            return r.status, json.loads(r.read() or b"{}")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def sign_at(endpoint: str, creds: dict, target: str, body: bytes, when: datetime.datetime,
            service: str = "ssm") -> dict:
    """A SigV4 signature computed here from the spec (not botocore), for a chosen clock."""
    host = endpoint.split("://", 1)[1]
    amz_date = when.strftime("%Y%m%dT%H%M%SZ")
    day = amz_date[:8]
    headers = {"content-type": "application/x-amz-json-1.1", "host": host,
               "x-amz-date": amz_date, "x-amz-target": target}
    signed = ";".join(sorted(headers))
    canonical = "\n".join(["POST", "/", "", *(f"{k}:{headers[k]}" for k in sorted(headers)), "",
                           signed, hashlib.sha256(body).hexdigest()])
    scope = f"{day}/{REGION}/{service}/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope,
                         hashlib.sha256(canonical.encode()).hexdigest()])
    key = ("AWS4" + creds["AWS_SECRET_ACCESS_KEY"]).encode()
    for part in (day, REGION, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    headers["authorization"] = (f"AWS4-HMAC-SHA256 Credential={creds['AWS_ACCESS_KEY_ID']}/{scope}, "
                                f"SignedHeaders={signed}, Signature={signature}")
    del headers["host"]  # urllib sends the same Host itself
    return headers


def admin(fleet, *args: str) -> dict:
    """Runs `fleetrun admin …` against the fleet's server with the key file from its data dir."""
    result = subprocess.run(
        [fleet.binary, "admin", "--endpoint", fleet.endpoint, "--data-dir", str(fleet.data_dir),
         *args],
        capture_output=True, text=True, timeout=30,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def new_key(fleet, user: str, policy: dict) -> dict:
    path = fleet.workdir / f"{user}.policy.json"
    path.write_text(json.dumps(policy))
    made = admin(fleet, "create-key", "--user", user, "--policy-file", str(path))["AccessKey"]
    assert made["AccessKeyId"].startswith("AKIA") and made["Status"] == "Active"
    return {"AWS_ACCESS_KEY_ID": made["AccessKeyId"],
            "AWS_SECRET_ACCESS_KEY": made["SecretAccessKey"]}


# --------------------------------------------------------------------------- authentication


def test_boto3_and_the_cli_with_the_administrator_key_succeed(fleet):
    assert "Commands" in fleet.ssm.list_commands()
    assert "Commands" in fleet.aws_json("list-commands")


def test_a_wrong_secret_is_an_invalid_signature(fleet):
    client = make_client(fleet.endpoint, credentials={
        "AWS_ACCESS_KEY_ID": fleet.credentials["AWS_ACCESS_KEY_ID"],
        "AWS_SECRET_ACCESS_KEY": "not-the-secret"})
    code, status, message = error_of(client.list_commands)
    assert (code, status) == ("InvalidSignatureException", 400)
    assert message.startswith("The request signature we calculated does not match"), message


def test_an_unknown_key_is_an_unrecognized_client_for_boto3_and_the_cli(fleet):
    creds = {"AWS_ACCESS_KEY_ID": "AKIAUNKNOWNUNKNOWN00", "AWS_SECRET_ACCESS_KEY": "x"}
    code, status, message = error_of(make_client(fleet.endpoint, credentials=creds).list_commands)
    assert (code, status, message) == (
        "UnrecognizedClientException", 400, "The security token included in the request is invalid.")
    env = dict(fleet.cli_env, **creds)
    result = subprocess.run(
        ["aws", "ssm", "list-commands", "--endpoint-url", fleet.endpoint],
        env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "(UnrecognizedClientException)" in result.stderr, result.stderr


def test_another_region_is_refused_with_the_scope_message(fleet):
    client = make_client(fleet.endpoint, region="eu-west-1")
    code, status, message = error_of(client.list_commands)
    assert (code, status) == ("InvalidSignatureException", 400)
    assert message == "Credential should be scoped to a valid region, not 'eu-west-1'. "


def test_no_signature_is_a_missing_authentication_token(fleet):
    status, body = post(fleet.endpoint, {"Content-Type": "application/x-amz-json-1.1",
                                         "X-Amz-Target": "AmazonSSM.ListCommands"}, b"{}")
    assert (status, body["__type"]) == (400, "MissingAuthenticationTokenException")
    assert body["Message"] == "Request is missing Authentication Token"


def test_a_clock_six_minutes_off_is_expired_and_four_minutes_is_fine(fleet):
    now = datetime.datetime.now(datetime.timezone.utc)
    target, body = "AmazonSSM.ListCommands", b"{}"
    for offset, expected in [(-360, "Signature expired: "), (360, "Signature not yet current: ")]:
        headers = sign_at(fleet.endpoint, fleet.credentials, target, body,
                          now + datetime.timedelta(seconds=offset))
        status, answer = post(fleet.endpoint, headers, body)
        assert (status, answer["__type"]) == (400, "InvalidSignatureException"), answer
        assert answer["Message"].startswith(expected) and "5 min.)" in answer["Message"], answer
    headers = sign_at(fleet.endpoint, fleet.credentials, target, body,
                      now - datetime.timedelta(seconds=240))
    assert post(fleet.endpoint, headers, body)[0] == 200


def test_a_signature_for_another_service_is_refused(fleet):
    now = datetime.datetime.now(datetime.timezone.utc)
    headers = sign_at(fleet.endpoint, fleet.credentials, "AmazonSSM.ListCommands", b"{}", now,
                      service="ec2")
    status, answer = post(fleet.endpoint, headers, b"{}")
    assert (status, answer["__type"]) == (400, "InvalidSignatureException")
    assert answer["Message"] == "Credential should be scoped to correct service: 'ssm'. "


def test_a_tampered_body_fails_its_signature(fleet):
    headers = signed_headers(fleet.endpoint, fleet.credentials,
                             {"Content-Type": "application/x-amz-json-1.1",
                              "X-Amz-Target": "AmazonSSM.ListCommands"}, b"{}")
    status, answer = post(fleet.endpoint, headers, b'{"MaxResults": 5}')
    assert (status, answer["__type"]) == (400, "InvalidSignatureException")


# --------------------------------------------------------------------------- policies


def test_a_list_only_key_cannot_send(fleet, node):
    creds = new_key(fleet, "e2e-auditor", {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "ssm:List*", "Resource": "*"}]})
    client = make_client(fleet.endpoint, credentials=creds)
    client.list_commands(MaxResults=1)
    code, status, message = error_of(client.send_command, InstanceIds=[node],
                                     DocumentName=DOCUMENT, Parameters={"commands": ["true"]})
    assert (code, status) == ("AccessDeniedException", 400)
    assert message == (
        "User: arn:aws:iam::000000000000:user/e2e-auditor is not authorized to perform: "
        "ssm:SendCommand on resource: arn:aws:ssm:us-east-1::document/AWS-RunShellScript "
        "because no identity-based policy allows the ssm:SendCommand action")
    listed = admin(fleet, "list-keys")["AccessKeyMetadata"]
    assert creds["AWS_ACCESS_KEY_ID"] in {k["AccessKeyId"] for k in listed}
    assert all("SecretAccessKey" not in k for k in listed)
    admin(fleet, "disable-key", creds["AWS_ACCESS_KEY_ID"])
    code, _, _ = error_of(client.list_commands)
    assert code == "UnrecognizedClientException"


def test_a_key_for_safe_documents_cannot_run_aws_run_shell_script(fleet, node):
    fleet.ssm.create_document(Name="Safe-E2eHello", DocumentType="Command", Content=json.dumps({
        "schemaVersion": "2.2", "description": "safe", "mainSteps": [
            {"action": "aws:runShellScript", "name": "hi", "inputs": {"runCommand": ["echo safe"]}}]}))
    creds = new_key(fleet, "e2e-safe", {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "ssm:SendCommand",
         "Resource": ["arn:aws:ssm:*:*:document/Safe-*", "arn:aws:ssm:*:*:managed-instance/*"]},
        {"Effect": "Allow", "Action": ["ssm:Get*", "ssm:List*"], "Resource": "*"}]})
    client = make_client(fleet.endpoint, credentials=creds)
    code, _, _ = error_of(client.send_command, InstanceIds=[node], DocumentName=DOCUMENT,
                          Parameters={"commands": ["true"]})
    assert code == "AccessDeniedException"
    sent = client.send_command(InstanceIds=[node], DocumentName="Safe-E2eHello")["Command"]
    done = wait_invocation(client, sent["CommandId"], node)
    assert (done["Status"], done["StandardOutputContent"]) == ("Success", "safe\n"), done


def test_a_key_for_dev_nodes_gets_access_denied_invocations_for_the_others(fleet):
    dev, prod = fleet.add_agents(2)
    for agent, env in ((dev, "dev"), (prod, "prod")):
        fleet.ssm.add_tags_to_resource(ResourceType="ManagedInstance", ResourceId=agent.instance_id,
                                       Tags=[{"Key": "e2e-env", "Value": env},
                                             {"Key": "e2e-auth", "Value": "pair"}])
    creds = new_key(fleet, "e2e-dev", {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "ssm:SendCommand",
         "Resource": "arn:aws:ssm:*::document/AWS-RunShellScript"},
        {"Effect": "Allow", "Action": "ssm:SendCommand",
         "Resource": "arn:aws:ssm:*:*:managed-instance/*",
         "Condition": {"StringEquals": {"ssm:resourceTag/e2e-env": "dev"}}},
        {"Effect": "Allow", "Action": ["ssm:List*", "ssm:Get*"], "Resource": "*"}]})
    client = make_client(fleet.endpoint, credentials=creds)
    sent = client.send_command(Targets=[{"Key": "tag:e2e-auth", "Values": ["pair"]}],
                               DocumentName=DOCUMENT, Parameters={"commands": ["echo dev"]})
    command_id = sent["Command"]["CommandId"]
    assert sent["Command"]["TargetCount"] == 2
    ran = wait_invocation(client, command_id, dev.instance_id)
    assert (ran["Status"], ran["StandardOutputContent"]) == ("Success", "dev\n"), ran
    denied = wait_invocation(client, command_id, prod.instance_id)
    assert (denied["Status"], denied["StatusDetails"]) == ("Failed", "AccessDenied"), denied
