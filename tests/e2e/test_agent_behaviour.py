"""How the `fleetrun agent` process behaves around its server, seen through boto3 and its exit code:
registration waits for a server that comes up late and is not retried when refused, a
deregistered agent exits 4 with one clear error, a clean stop is ConnectionLost at once (and
Online again after a restart), and `--help` documents it all."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from conftest import REGION, Proc, free_port, healthy, make_client, poll, wait_invocation

EXIT_CODES = {
    0: "stopped cleanly",
    1: "configuration or start-up error",
    2: "usage error",
    3: "registration refused",
    4: "deregistered on the server",
    5: "gave up registering",
    130: "interrupted",
}


def ping_status(fleet, node: str) -> str:
    info = fleet.ssm.describe_instance_information(
        Filters=[{"Key": "InstanceIds", "Values": [node]}]
    )["InstanceInformationList"]
    return info[0]["PingStatus"] if info else ""


def test_agent_help_documents_exit_codes_state_dir_and_environment(fleet):
    for argv in (["agent", "--help"], ["agent", "register", "--help"]):
        out = subprocess.run([fleet.binary, *argv], capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, out.stderr
        text = out.stdout
        assert "Exit codes:" in text, text
        for code, words in EXIT_CODES.items():
            assert f"\n  {code:<4} " in text and words in text, (code, text)
        for needle in ("identity.json", "outbox/", "work/<command-id>/<step>/",
                       "FLEETRUN_SERVER", "FLEETRUN_STATE_DIR", "FLEETRUN_ACTIVATION_CODE",
                       "FLEETRUN_REGISTER_TIMEOUT", "--register-timeout", "RUST_LOG"):
            assert needle in text, (needle, text)
    usage = subprocess.run([fleet.binary, "agent", "--no-such-flag"], capture_output=True, timeout=30)
    assert usage.returncode == 2


def test_a_clean_stop_is_connection_lost_at_once_and_online_again_after_a_restart(fleet):
    (agent,) = fleet.add_agents(1)
    assert ping_status(fleet, agent.instance_id) == "Online"

    assert agent.stop() == 0, agent.proc.stderr_tail()
    # The server's ping timeout is 60 s: only the agent's goodbye can make this immediate.
    assert ping_status(fleet, agent.instance_id) == "ConnectionLost"
    command_id = fleet.run(agent.instance_id, ["echo back"])
    fleet.wait_invocation(command_id, agent.instance_id, statuses={"Delayed"}, timeout=5)

    again = fleet.restart_agent(agent)
    poll("the node Online again", lambda: ping_status(fleet, agent.instance_id) == "Online", 15)
    inv = fleet.wait_invocation(command_id, agent.instance_id)
    assert (inv["Status"], inv["StandardOutputContent"]) == ("Success", "back\n"), inv
    assert again.stop() == 0, again.proc.stderr_tail()


def test_a_deregistered_agent_exits_4_with_one_clear_error(fleet):
    (agent,) = fleet.add_agents(1)
    fleet.ssm.deregister_managed_instance(InstanceId=agent.instance_id)

    # Its long poll is answered at once; no waiting for the poll to end.
    poll("the agent to exit", lambda: not agent.proc.running(), 10)
    code = agent.stop()
    log = agent.proc.stderr_tail(200)
    assert code == 4, log
    errors = [line for line in log.splitlines() if " ERROR " in f" {line} "]
    assert len(errors) == 1, log
    assert agent.instance_id in errors[0], log
    assert "deregistered on the server; register again with a new activation" in errors[0], log
    assert str(agent.state_dir) in errors[0], log


def start_fixed_server(fleet, data_dir: Path, port: int, name: str) -> Proc:
    """`fleetrun server` on a given port (no local node); returns once /healthz answers."""
    proc = Proc(
        name,
        [fleet.binary, "server", "--listen", f"127.0.0.1:{port}", "--data-dir", str(data_dir),
         "--region", REGION],
        fleet.logs,
    )
    endpoint = f"http://127.0.0.1:{port}"
    poll(f"{name} /healthz", lambda: healthy(endpoint) or not proc.running(), 60)
    assert proc.running(), proc.stderr_tail()
    return proc


def test_register_waits_for_a_server_that_comes_up_late_and_a_refusal_exits_3(fleet, tmp_path):
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    data = tmp_path / "late-server"
    server = start_fixed_server(fleet, data, port, "late-server-1")
    try:
        key = server.wait_for_line(r"export AWS_ACCESS_KEY_ID=(\S+) AWS_SECRET_ACCESS_KEY=(\S+)", 10)
        creds = {"AWS_ACCESS_KEY_ID": key.group(1), "AWS_SECRET_ACCESS_KEY": key.group(2)}
        act = make_client(endpoint, credentials=creds).create_activation(
            IamRole="fleetrun-e2e", RegistrationLimit=1
        )
    finally:
        assert server.stop() == 0, server.stderr_tail()

    # A wrong code, against a server that is up: refused once, exit 3, no retry.
    server = start_fixed_server(fleet, data, port, "late-server-2")
    try:
        refused = subprocess.run(
            [fleet.binary, "agent", "register", "--server", endpoint, "--state-dir",
             str(tmp_path / "refused"), "--activation-id", act["ActivationId"],
             "--activation-code-file", "-"],
            input=b"not-the-code-at-all-0000", capture_output=True, timeout=30,
        )
        assert refused.returncode == 3, refused.stderr.decode()
        assert b"refused the registration (InvalidActivation)" in refused.stderr, refused.stderr
        assert b"retrying" not in refused.stderr, refused.stderr
    finally:
        assert server.stop() == 0, server.stderr_tail()

    # The server is down: `register` keeps retrying (WARN lines), then registers once it is back.
    state = tmp_path / "late-agent"
    code_file = tmp_path / "activation-code"
    code_file.write_text(act["ActivationCode"])
    argv = [fleet.binary, "agent", "register", "--server", endpoint, "--state-dir", str(state),
            "--activation-id", act["ActivationId"], "--activation-code-file", str(code_file)]
    started = time.monotonic()
    registering = subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env=dict(os.environ, NO_COLOR="1"),
    )
    time.sleep(3)
    assert registering.poll() is None, "still waiting for the server"
    server = start_fixed_server(fleet, data, port, "late-server-3")
    try:
        out, err = registering.communicate(timeout=60)
        assert registering.returncode == 0, err.decode()
        assert time.monotonic() - started >= 3
        assert b"registered as managed node mi-" in out, out
        warnings = [line for line in err.decode().splitlines() if "cannot register" in line]
        assert warnings and all("WARN" in line and "retry_in" in line for line in warnings), err
        assert (state / "identity.json").exists()
    finally:
        if registering.poll() is None:
            registering.kill()
        assert server.stop() == 0, server.stderr_tail()


def test_register_timeout_gives_up_with_exit_5(fleet, tmp_path):
    port = free_port()  # nothing listens here
    out = subprocess.run(
        [fleet.binary, "agent", "register", "--server", f"http://127.0.0.1:{port}", "--state-dir",
         str(tmp_path / "never"), "--activation-id", "00000000-0000-0000-0000-000000000000",
         "--activation-code-file", "-", "--register-timeout", "2s"],
        input=b"some-code-some-code-some", capture_output=True, timeout=30,
    )
    assert out.returncode == 5, out.stderr.decode()
    assert b"gave up registering" in out.stderr, out.stderr
    assert not (tmp_path / "never" / "identity.json").exists()
