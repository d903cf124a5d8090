"""What fleetrun writes to its log (stderr), read as an operator reads it.

* Colour only on a terminal, never with NO_COLOR; a log file gets no escape codes.
* Every client error answered is logged once at INFO with its AWS code, operation, HTTP status
  and the caller's access key.
* An audit line (target `fleetrun::audit`) per mutating call, and per refused one.
* `--log-format json`: every stderr line is one JSON object without duplicate keys, stdout stays
  empty (the banner's facts are one event), and `RUST_LOG=fleetrun::audit=info` keeps only the
  audit trail.

Each test module starts its own servers (not the shared one): their environment and log format
differ from the suite's.
"""

from __future__ import annotations

import json
import os
import pty
import re
import select
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from conftest import (
    DOCUMENT,
    REGION,
    Proc,
    fleetrun_binary,
    free_port,
    healthy,
    make_client,
    poll,
    start_server,
    wait_invocation,
)

ESC = "\x1b"
UNKNOWN_NODE = "mi-0123456789abcdef0"


def env_without_no_color(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "RUST_LOG")}
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def workdir():
    d = Path(tempfile.mkdtemp(prefix="fleetrun-logs-"))
    (d / "logs").mkdir()
    yield d
    shutil.rmtree(d, ignore_errors=True)


def create_key(binary: str, endpoint: str, data_dir: Path, user: str, policy: str) -> dict:
    made = subprocess.run(
        [binary, "admin", "--endpoint", endpoint, "--data-dir", str(data_dir), "create-key",
         "--user", user, "--policy", policy, "--output", "text"],
        capture_output=True, text=True, timeout=30,
        env={k: v for k, v in os.environ.items() if not k.startswith("AWS_")},
    )
    assert made.returncode == 0, made.stderr
    key_id, secret = made.stdout.split()
    return {"AWS_ACCESS_KEY_ID": key_id, "AWS_SECRET_ACCESS_KEY": secret}


def traffic(binary: str, endpoint: str, data_dir: Path, node: str | None) -> dict:
    """One client error, one (or no) command, one refused send; returns what the log must name."""
    admin = make_client(endpoint)
    with pytest.raises(ClientError) as refused:
        admin.send_command(
            InstanceIds=[UNKNOWN_NODE], DocumentName=DOCUMENT, Parameters={"commands": ["true"]}
        )
    assert refused.value.response["Error"]["Code"] == "InvalidInstanceId"
    sent = None
    if node:
        sent = admin.send_command(
            InstanceIds=[node], DocumentName=DOCUMENT, Parameters={"commands": ["echo logged"]}
        )["Command"]["CommandId"]
        wait_invocation(admin, sent, node)
    auditor = create_key(binary, endpoint, data_dir, "auditor", "ReadOnly")
    reader = make_client(endpoint, credentials=auditor)
    with pytest.raises(ClientError) as denied:
        reader.send_command(
            InstanceIds=[node or UNKNOWN_NODE], DocumentName=DOCUMENT,
            Parameters={"commands": ["true"]},
        )
    assert denied.value.response["Error"]["Code"] == "AccessDeniedException"
    return {"command_id": sent, "auditor": auditor["AWS_ACCESS_KEY_ID"]}


# ----------------------------------------------------------------------------- text format


@pytest.fixture(scope="module")
def text_log(workdir):
    """A text-format server whose stderr is a file, NO_COLOR unset; its log after some traffic."""
    binary = fleetrun_binary()
    data_dir = workdir / "text-data"
    server = start_server(
        binary, data_dir, workdir / "logs", "text-server", local_node=True,
        env=env_without_no_color(),
    )
    try:
        facts = traffic(binary, server.endpoint, data_dir, server.node_id)
        facts.update(admin=server.credentials["AWS_ACCESS_KEY_ID"], node=server.node_id)
        time.sleep(0.2)
    finally:
        server.proc.stop()
    facts["log"] = server.proc.log_path.read_text("utf-8", "replace")
    return facts


def lines_with(log: str, *needles: str) -> list[str]:
    return [l for l in log.splitlines() if all(n in l for n in needles)]


def test_a_log_file_gets_no_escape_codes(text_log):
    assert "INFO" in text_log["log"]
    assert ESC not in text_log["log"], repr(text_log["log"][:500])


def test_a_client_error_is_logged_once_at_info_with_code_op_status_and_key(text_log):
    (line,) = lines_with(text_log["log"], "client error", "InvalidInstanceId")
    assert " INFO " in line, line
    assert re.search(r'\bop="?SendCommand\b', line), line
    assert re.search(r"\bstatus=400\b", line), line
    assert re.search(rf'\baccess_key_id="?{text_log["admin"]}\b', line), line
    assert re.search(r'\buser="?admin\b', line), line


def test_a_refused_call_is_a_client_error_and_an_audit_line(text_log):
    (error,) = lines_with(text_log["log"], "client error", "AccessDeniedException")
    assert text_log["auditor"] in error and re.search(r'\buser="?auditor\b', error), error
    (audit,) = lines_with(text_log["log"], "fleetrun::audit", text_log["auditor"], "denied")
    assert " INFO " in audit, audit
    for field in ("op=\"SendCommand\"", "outcome=\"denied\"", "user=auditor",
                  "action=\"ssm:SendCommand\""):
        assert field.replace('"', "") in audit.replace('"', ""), (field, audit)


def test_a_send_writes_one_audit_line_with_key_command_id_document_and_targets(text_log):
    (audit,) = lines_with(text_log["log"], "fleetrun::audit", text_log["command_id"])
    plain = audit.replace('"', "")
    for field in (
        "op=SendCommand", f"access_key_id={text_log['admin']}", "user=admin", "outcome=allowed",
        f"command_id={text_log['command_id']}", f"document={DOCUMENT}", "targets=1",
    ):
        assert field in plain, (field, audit)
    # A rejected send changed nothing: no audit line for it.
    assert not lines_with(text_log["log"], "fleetrun::audit", UNKNOWN_NODE)


def test_the_agent_says_it_started_once(text_log):
    assert len(lines_with(text_log["log"], "agent started")) == 1, text_log["log"]


def test_the_administrator_secret_is_never_logged(text_log, workdir):
    secret = (workdir / "text-data" / "admin-credentials").read_text().split(
        "aws_secret_access_key = "
    )[1].strip()
    assert secret and secret not in text_log["log"]


# ----------------------------------------------------------------------------- a terminal


def stderr_on_a_terminal(env: dict, workdir: Path, name: str) -> str:
    """Starts a server whose stderr is a pseudo-terminal; returns what it wrote until ready."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [fleetrun_binary(), "server", "--listen", f"127.0.0.1:{free_port()}",
         "--data-dir", str(workdir / name)],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=slave, env=env,
    )
    os.close(slave)
    seen = b""
    deadline = time.monotonic() + 30
    try:
        while b"fleetrun server ready" not in seen and time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if ready:
                try:
                    seen += os.read(master, 65536)
                except OSError:
                    break
    finally:
        proc.terminate()
        proc.wait(10)
        os.close(master)
    text = seen.decode("utf-8", "replace")
    assert "fleetrun server ready" in text, text
    return text


def test_a_terminal_gets_colour(workdir):
    assert ESC + "[" in stderr_on_a_terminal(env_without_no_color(), workdir, "tty-colour")


def test_no_color_turns_colour_off_even_on_a_terminal(workdir):
    text = stderr_on_a_terminal(env_without_no_color(NO_COLOR="1"), workdir, "tty-no-colour")
    assert ESC not in text, repr(text[:300])


# ----------------------------------------------------------------------------- JSON


def no_duplicates(pairs):
    keys = [k for k, _ in pairs]
    dup = {k for k in keys if keys.count(k) > 1}
    if dup:
        raise ValueError(f"duplicate keys {sorted(dup)}")
    return dict(pairs)


def parse_json_lines(text: str) -> list[dict]:
    events = []
    for n, line in enumerate(text.splitlines(), 1):
        try:
            event = json.loads(line, object_pairs_hook=no_duplicates)
        except ValueError as e:
            raise AssertionError(f"stderr line {n} is not one JSON object without duplicate keys "
                                 f"({e}): {line!r}") from None
        assert isinstance(event, dict), line
        events.append(event)
    return events


def start_json_server(
    workdir: Path, name: str, local_node: bool, **env
) -> tuple[Proc, str, dict | None]:
    """`fleetrun --log-format json server`; returns once it answers /healthz and, unless RUST_LOG
    filters it out, has logged its "ready" event (returned too)."""
    data_dir = workdir / f"{name}-data"
    endpoint = f"http://127.0.0.1:{free_port()}"
    argv = [fleetrun_binary(), "--log-format", "json", "server",
            "--listen", endpoint.removeprefix("http://"), "--data-dir", str(data_dir),
            "--region", REGION] + (["--local-node"] if local_node else [])
    proc = Proc(name, argv, workdir / "logs", env=env_without_no_color(**env))

    def ready():
        text = proc.log_path.read_text("utf-8", "replace")
        assert proc.running(), text
        for line in text.splitlines():
            if '"fleetrun server ready"' in line:
                return json.loads(line)
        return None

    poll("/healthz", lambda: healthy(endpoint), 60)
    event = poll("the ready event", ready, 60, interval=0.2) if "RUST_LOG" not in env else None
    import conftest

    conftest.CREDENTIALS_BY_ENDPOINT[endpoint] = credentials_of(data_dir)
    return proc, endpoint, event


def credentials_of(data_dir: Path) -> dict:
    text = (data_dir / "admin-credentials").read_text()
    value = lambda k: re.search(rf"^{k} = (\S+)$", text, re.M).group(1)  # noqa: E731
    return {"AWS_ACCESS_KEY_ID": value("aws_access_key_id"),
            "AWS_SECRET_ACCESS_KEY": value("aws_secret_access_key")}


@pytest.fixture(scope="module")
def json_log(workdir):
    proc, endpoint, ready = start_json_server(workdir, "json-server", local_node=True)
    data_dir = workdir / "json-server-data"
    try:
        assert ready["fields"]["endpoint"] == endpoint, ready
        facts = traffic(fleetrun_binary(), endpoint, data_dir, ready["fields"]["local_node"])
        time.sleep(0.2)
    finally:
        proc.stop()
    facts.update(
        ready=ready, data_dir=data_dir, stdout=list(proc.lines),
        stderr=proc.log_path.read_text("utf-8", "replace"),
    )
    return facts


def test_json_every_stderr_line_is_one_object_without_duplicate_keys(json_log):
    events = parse_json_lines(json_log["stderr"])
    assert len(events) > 10
    assert all({"timestamp", "level", "target"} <= e.keys() for e in events)
    messages = [e["fields"].get("message") for e in events]
    assert "client error" in messages and "command sent" in messages, messages


def test_json_stdout_has_no_banner(json_log):
    assert not [l for l in json_log["stdout"] if l.strip()], json_log["stdout"]


def test_json_the_banner_facts_are_one_event_without_the_secret(json_log):
    fields = json_log["ready"]["fields"]
    assert fields["endpoint"].startswith("http://127.0.0.1:")
    assert re.fullmatch(r"mi-[0-9a-f]{17}", fields["local_node"])
    assert fields["admin_credentials_file"] == str(
        (json_log["data_dir"] / "admin-credentials").resolve()
    )
    secret = credentials_of(json_log["data_dir"])["AWS_SECRET_ACCESS_KEY"]
    assert secret not in json_log["stderr"]


def test_json_client_errors_and_audit_lines_carry_their_fields(json_log):
    events = parse_json_lines(json_log["stderr"])
    (error,) = [e for e in events if e["fields"].get("code") == "InvalidInstanceId"]
    assert (error["level"], error["fields"]["op"], error["fields"]["status"]) == (
        "INFO", "SendCommand", 400,
    )
    (sent,) = [
        e for e in events
        if e["target"] == "fleetrun::audit" and e["fields"].get("command_id") == json_log["command_id"]
    ]
    assert {"op", "access_key_id", "user", "outcome", "document", "targets"} <= sent["fields"].keys()


def test_rust_log_selects_the_audit_trail_alone(workdir):
    proc, endpoint, _ = start_json_server(
        workdir, "audit-only", local_node=False, RUST_LOG="fleetrun::audit=info"
    )
    try:
        ssm = make_client(endpoint)
        ssm.create_activation(IamRole="audited", RegistrationLimit=1)
        with pytest.raises(ClientError):
            ssm.send_command(
                InstanceIds=[UNKNOWN_NODE], DocumentName=DOCUMENT, Parameters={"commands": ["x"]}
            )
        time.sleep(0.2)
    finally:
        proc.stop()
    events = parse_json_lines(proc.log_path.read_text("utf-8", "replace"))
    assert {e["target"] for e in events} == {"fleetrun::audit"}, events
    (made,) = events
    assert made["fields"]["op"] == "CreateActivation", made
    assert "activation_id" in made["fields"] and "ActivationCode" not in json.dumps(made)
