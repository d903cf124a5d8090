"""Notifications: a command's NotificationConfig names an SNS topic ARN; the session's server maps
that topic to a webhook in this test (`--webhook`, conftest.py), which receives SNS's HTTP
notification envelope with the documented message bodies, signed with its secret.

The receiver's port is reserved (bound, not listening) when the server starts, so the first test
finds it down: connections are refused until it listens, and the notices must arrive then."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from botocore.exceptions import ClientError

from conftest import WEBHOOK_TOPIC, poll

class Receiver:
    """The webhook: records every POST (headers and raw body)."""

    def __init__(self, sock):
        self.posts: list[tuple[dict, bytes]] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's name)
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                with receiver.lock:
                    receiver.posts.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.http = HTTPServer(("127.0.0.1", 0), Handler, bind_and_activate=False)
        self.http.socket.close()
        self.http.socket = sock
        self.thread: threading.Thread | None = None

    def start(self):
        self.http.server_activate()
        self.thread = threading.Thread(target=self.http.serve_forever, daemon=True)
        self.thread.start()

    def messages(self, command_id: str) -> list[tuple[dict, dict, dict]]:
        """(headers, envelope, message) of every POST about `command_id`."""
        with self.lock:
            posts = list(self.posts)
        out = []
        for headers, body in posts:
            envelope = json.loads(body)
            message = json.loads(envelope["Message"])
            if message["commandId"] == command_id:
                out.append((headers, envelope, message))
        return out


@pytest.fixture(scope="module")
def receiver(fleet):
    r = Receiver(fleet.webhook_socket)
    yield r
    if r.thread:
        r.http.shutdown()


def secret(fleet) -> str:
    """The webhook's signing secret, from the server's data dir."""
    for line in (fleet.data_dir / "webhook-secrets").read_text().splitlines():
        if line and not line.startswith("#"):
            url, value = line.split(" ", 1)
            if url == fleet.webhook_url:
                return value
    raise AssertionError("no secret for the webhook")


def send(fleet, nodes, commands, kind, events=("All",)):
    return fleet.send(
        nodes,
        commands,
        NotificationConfig={
            "NotificationArn": WEBHOOK_TOPIC,
            "NotificationEvents": list(events),
            "NotificationType": kind,
        },
        ServiceRoleArn="arn:aws:iam::000000000000:role/fleetrun-sns",
    )


def statuses(receiver, command_id, want: int, timeout: float = 30.0):
    """Waits for `want` messages about the command; returns them."""
    return poll(
        f"{want} notifications for {command_id}",
        lambda: (m := receiver.messages(command_id)) and len(m) >= want and m,
        timeout,
    )


def test_a_receiver_that_was_down_gets_the_notices_once_it_is_back(fleet, receiver, node):
    command = send(fleet, [node], ["echo down"], "Command")
    fleet.wait_command(command["CommandId"])
    # Refused connections meanwhile: retried with backoff (capped at 2 s for this server).
    time.sleep(2.5)
    assert receiver.messages(command["CommandId"]) == []
    receiver.start()
    got = statuses(receiver, command["CommandId"], 2)
    time.sleep(1.5)  # anything sent twice would arrive by now
    got = receiver.messages(command["CommandId"])
    assert sorted(m["status"] for _, _, m in got) == ["InProgress", "Success"]
    assert len({e["MessageId"] for _, e, _ in got}) == len(got), "each delivered once"


def test_command_summaries_follow_the_documented_shape_and_are_signed(fleet, receiver, two_agents):
    nodes = [fleet.node_id, two_agents[0].instance_id]
    command = send(fleet, nodes, ["echo hi"], "Command")
    cid = command["CommandId"]
    fleet.wait_command(cid)
    got = statuses(receiver, cid, 2)
    key = secret(fleet).encode()
    by_status = {}
    for headers, envelope, message in got:
        by_status[message["status"]] = (headers, envelope, message)
    assert set(by_status) == {"InProgress", "Success"}
    for status, (headers, envelope, message) in by_status.items():
        assert headers["x-amz-sns-message-type"] == "Notification"
        assert headers["x-amz-sns-topic-arn"] == WEBHOOK_TOPIC
        assert headers["x-amz-sns-message-id"] == envelope["MessageId"]
        assert envelope["Type"] == "Notification"
        assert envelope["TopicArn"] == WEBHOOK_TOPIC
        assert list(message) == [
            "commandId", "documentName", "instanceIds", "requestedDateTime", "expiresAfter",
            "outputS3BucketName", "outputS3KeyPrefix", "status", "eventTime",
        ]
        assert message["documentName"] == "AWS-RunShellScript"
        assert message["instanceIds"] == nodes
        assert message["requestedDateTime"].endswith("Z") and message["eventTime"].endswith("Z")
    # Signatures over the raw bodies.
    with receiver.lock:
        raw_posts = [(h, b) for h, b in receiver.posts if cid.encode() in b]
    assert len(raw_posts) == 2
    for headers, body in raw_posts:
        expected = "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()
        assert hmac.compare_digest(headers["x-fleetrun-signature"], expected)
        forged = "sha256=" + hmac.new(b"not the secret", body, hashlib.sha256).hexdigest()
        assert headers["x-fleetrun-signature"] != forged


def test_invocation_messages_name_each_node_and_follow_the_events_filter(fleet, receiver, two_agents):
    nodes = [fleet.node_id, two_agents[0].instance_id]
    every = send(fleet, nodes, ["echo per-node"], "Invocation")
    fleet.wait_command(every["CommandId"])
    got = statuses(receiver, every["CommandId"], 4)
    seen = sorted((m["instanceId"], m["status"]) for _, _, m in got)
    assert seen == sorted((n, s) for n in nodes for s in ("InProgress", "Success"))
    for _, _, message in got:
        assert list(message) == [
            "commandId", "documentName", "instanceId", "requestedDateTime", "status", "eventTime",
        ]

    # Only failures: the node that exits 1 is announced, once; the other is not.
    failing = send(
        fleet, nodes, ['[ "$AWS_SSM_INSTANCE_ID" = "%s" ] && exit 1; true' % nodes[1]],
        "Invocation", events=("Failed",),
    )
    fleet.wait_command(failing["CommandId"])
    got = statuses(receiver, failing["CommandId"], 1)
    time.sleep(1.5)
    got = receiver.messages(failing["CommandId"])
    assert [(m["instanceId"], m["status"]) for _, _, m in got] == [(nodes[1], "Failed")]


def test_a_topic_no_webhook_serves_is_invalid_notification_config(fleet, node):
    with pytest.raises(ClientError) as e:
        fleet.ssm.send_command(
            DocumentName="AWS-RunShellScript",
            InstanceIds=[node],
            Parameters={"commands": ["true"]},
            NotificationConfig={
                "NotificationArn": "arn:aws:sns:us-east-1:000000000000:nobody-listens",
                "NotificationEvents": ["All"],
                "NotificationType": "Command",
            },
        )
    assert e.value.response["Error"]["Code"] == "InvalidNotificationConfig"
    assert "nobody-listens" in e.value.response["Error"]["Message"]
