"""TLS, end to end with the real binary: the second-machine walk-through over HTTPS.

`fleetrun server --listen 0.0.0.0:PORT` is a non-loopback listener, so with no certificate given it
generates a self-signed one in `<data-dir>/tls/` and prints its SHA-256 fingerprint. The "second
machine" is played by agents dialing 127.0.0.1 (a name every generated certificate carries), each in
its own state dir: one pinning the fingerprint, one trusting the certificate as its CA. The aws CLI
sends over TLS with `--ca-bundle`. Plain HTTP on 0.0.0.0 needs `--insecure-http`; an operator's
certificate (`--tls-cert/--tls-key`) also serves on loopback.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import shutil
import ssl
import stat
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest
from botocore.config import Config

from conftest import (
    DOCUMENT,
    REGION,
    STARTUP_TIMEOUT,
    TERMINAL,
    Proc,
    aws_cli,
    fleetrun_binary,
    free_port,
    poll,
)

BANNER_KEY = re.compile(r"export AWS_ACCESS_KEY_ID=(\S+) AWS_SECRET_ACCESS_KEY=(\S+)")
FINGERPRINT = re.compile(r"SHA-256 fingerprint ((?:[0-9A-F]{2}:){31}[0-9A-F]{2})\b")


@dataclass
class TlsServer:
    proc: Proc
    endpoint: str  # what clients on this machine dial
    data_dir: Path
    credentials: dict
    fingerprint: str | None
    banner: list[str]

    @property
    def cert(self) -> Path:
        return self.data_dir / "tls" / "cert.pem"

    def stop(self) -> int:
        return self.proc.stop()


def start(
    workdir: Path, name: str, listen_host: str, *extra: str, data_dir: Path | None = None
) -> TlsServer:
    """`fleetrun server --listen HOST:PORT …`; returns once the banner is complete."""
    data_dir = data_dir or workdir / f"{name}-data"
    port = free_port()
    argv = [
        fleetrun_binary(), "server",
        "--listen", f"{listen_host}:{port}",
        "--data-dir", str(data_dir),
        "--region", REGION,
        *extra,
    ]
    proc = Proc(name, argv, workdir)
    banner = proc.wait_for_line(r"this machine is managed node (mi-\w{17})\b|no local node", STARTUP_TIMEOUT)
    assert banner
    endpoint = proc.wait_for_line(r"serving the SSM Run Command API at (https?://\S+)", 1).group(1)
    key = proc.wait_for_line(BANNER_KEY.pattern, 5)
    credentials = {"AWS_ACCESS_KEY_ID": key.group(1), "AWS_SECRET_ACCESS_KEY": key.group(2)}
    fp = None
    if endpoint.startswith("https://"):
        fp = proc.wait_for_line(FINGERPRINT.pattern, 1).group(1)
    assert endpoint.endswith(f":{port}"), endpoint
    return TlsServer(proc, endpoint, data_dir, credentials, fp, list(proc.lines))


def healthz(endpoint: str, cafile: Path | None = None) -> bool:
    context = ssl.create_default_context(cafile=str(cafile)) if cafile else None
    try:
        with urllib.request.urlopen(f"{endpoint}/healthz", timeout=2, context=context) as r:
            return r.status == 200
    except (OSError, http.client.HTTPException):
        return False


def der_fingerprint(pem_path: Path) -> str:
    der = ssl.PEM_cert_to_DER_cert(pem_path.read_text())
    return ":".join(f"{b:02X}" for b in hashlib.sha256(der).digest())


def ssm(server: TlsServer):
    """boto3 over TLS, trusting the server's certificate."""
    return boto3.client(
        "ssm",
        endpoint_url=server.endpoint,
        region_name=REGION,
        aws_access_key_id=server.credentials["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=server.credentials["AWS_SECRET_ACCESS_KEY"],
        verify=str(server.cert),
        config=Config(retries={"max_attempts": 1}, connect_timeout=5, read_timeout=30),
    )


def aws(server: TlsServer, workdir: Path, *args: str, ca_bundle: bool = True) -> subprocess.CompletedProcess:
    """The aws CLI against the server, with `--ca-bundle <data-dir>/tls/cert.pem` unless told not to."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(server.credentials)
    env.update(
        AWS_DEFAULT_REGION=REGION,
        AWS_CONFIG_FILE=str(workdir / "aws-config-none"),
        AWS_SHARED_CREDENTIALS_FILE=str(workdir / "aws-credentials-none"),
        AWS_PAGER="",
        AWS_MAX_ATTEMPTS="1",
    )
    argv = [aws_cli(), "ssm", *args, "--endpoint-url", server.endpoint, "--output", "json"]
    if ca_bundle:
        argv += ["--ca-bundle", str(server.cert)]
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)


def aws_json(server: TlsServer, workdir: Path, *args: str) -> dict:
    r = aws(server, workdir, *args)
    assert r.returncode == 0, f"aws ssm {' '.join(args)} failed ({r.returncode}):\n{r.stderr}"
    return json.loads(r.stdout) if r.stdout.strip() else {}


def register(server_url: str, state_dir: Path, activation: dict, trust: list[str]) -> subprocess.CompletedProcess:
    """`fleetrun agent register …` with the code on standard input."""
    return subprocess.run(
        [
            fleetrun_binary(), "agent", "register",
            "--server", server_url, "--state-dir", str(state_dir),
            "--activation-id", activation["ActivationId"], "--activation-code-file", "-",
            *trust,
        ],
        input=activation["ActivationCode"].encode(),
        capture_output=True,
        timeout=60,
    )


@pytest.fixture(scope="module")
def workdir():
    path = Path(tempfile.mkdtemp(prefix="fleetrun-e2e-tls-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def server(workdir):
    """`fleetrun server --listen 0.0.0.0:PORT --local-node`: TLS with a generated certificate."""
    s = start(workdir, "tls-server", "0.0.0.0", "--local-node")
    try:
        poll("/healthz over TLS", lambda: healthz(s.endpoint, s.cert), STARTUP_TIMEOUT)
        yield s
    finally:
        s.stop()


def test_all_interfaces_get_a_generated_certificate_whose_fingerprint_the_banner_prints(server):
    assert server.endpoint.startswith("https://127.0.0.1:"), server.endpoint
    assert server.fingerprint == der_fingerprint(server.cert)
    tls_dir = server.data_dir / "tls"
    assert stat.S_IMODE(tls_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE((tls_dir / "key.pem").stat().st_mode) == 0o600
    # The banner tells the aws CLI which certificate to trust, by absolute path.
    export = next(line for line in server.banner if "export AWS_ACCESS_KEY_ID=" in line)
    assert f"AWS_CA_BUNDLE={server.cert.resolve()}" in export, export
    # ... and the log records the fingerprint too.
    log = server.proc.log_path.read_text("utf-8", "replace")
    assert server.fingerprint in log


def test_plain_http_to_the_tls_port_gets_no_http_answer(server):
    assert not healthz(server.endpoint.replace("https://", "http://"))


def test_two_machine_walkthrough_over_tls(server, workdir):
    """Two agents in their own state dirs, one pinned by fingerprint and one trusting the
    certificate as its CA, run a command sent by the aws CLI over TLS."""
    client = ssm(server)
    act = client.create_activation(IamRole="fleetrun-e2e", RegistrationLimit=2, Description="tls")
    trusts = {
        "pinned": ["--server-fingerprint", server.fingerprint],
        "ca": ["--ca-cert", str(server.cert)],
    }
    agents = []
    try:
        for name, trust in trusts.items():
            state_dir = workdir / f"agent-{name}"
            r = register(server.endpoint, state_dir, act, trust)
            assert r.returncode == 0, r.stderr.decode("utf-8", "replace")
            node = json.loads((state_dir / "identity.json").read_text())["instanceId"]
            argv = [
                fleetrun_binary(), "agent", "--server", server.endpoint,
                "--state-dir", str(state_dir), "--region", REGION, *trust,
            ]
            agents.append((node, Proc(f"agent-{name}", argv, workdir)))
        nodes = [node for node, _ in agents]

        def online():
            info = client.describe_instance_information(
                Filters=[{"Key": "ActivationIds", "Values": [act["ActivationId"]]}]
            )["InstanceInformationList"]
            status = {i["InstanceId"]: i["PingStatus"] for i in info}
            return all(status.get(n) == "Online" for n in nodes)

        poll("TLS agents Online", online, 30, interval=0.2)

        sent = aws_json(
            server, workdir,
            "send-command", "--instance-ids", *nodes,
            "--document-name", DOCUMENT,
            "--parameters", 'commands=["echo over-tls $AWS_SSM_INSTANCE_ID"]',
        )
        command_id = sent["Command"]["CommandId"]
        for node in nodes:
            def finished():
                inv = aws_json(server, workdir, "get-command-invocation",
                               "--command-id", command_id, "--instance-id", node)
                return inv if inv["Status"] in TERMINAL else None

            inv = poll(f"invocation on {node}", finished, 30, interval=0.3)
            assert (inv["Status"], inv["ResponseCode"]) == ("Success", 0), inv
            assert inv["StandardOutputContent"] == f"over-tls {node}\n"
        for _, proc in agents:
            assert proc.running(), proc.stderr_tail()
    finally:
        for _, proc in agents:
            proc.stop()


def test_local_node_pins_its_own_server(server, workdir):
    node = server.proc.wait_for_line(r"this machine is managed node (mi-\w{17})\b", 1).group(1)
    client = ssm(server)
    command_id = client.send_command(
        InstanceIds=[node], DocumentName=DOCUMENT, Parameters={"commands": ["echo local"]}
    )["Command"]["CommandId"]

    def finished():
        inv = client.get_command_invocation(CommandId=command_id, InstanceId=node)
        return inv if inv["Status"] in TERMINAL else None

    inv = poll("local node invocation", finished, 30)
    assert (inv["Status"], inv["StandardOutputContent"]) == ("Success", "local\n")


def test_aws_cli_without_the_ca_bundle_refuses_the_certificate(server, workdir):
    r = aws(server, workdir, "list-commands", ca_bundle=False)
    assert r.returncode != 0
    assert "CERTIFICATE_VERIFY_FAILED" in r.stderr or "SSL" in r.stderr, r.stderr


def test_agent_with_a_wrong_fingerprint_does_not_connect_and_says_why(server, workdir):
    act = ssm(server).create_activation(IamRole="fleetrun-e2e", RegistrationLimit=1)
    state_dir = workdir / "agent-wrong-pin"
    r = register(server.endpoint, state_dir, act, ["--server-fingerprint", "00" * 32])
    err = r.stderr.decode("utf-8", "replace")
    assert r.returncode != 0
    assert "fingerprint" in err and server.fingerprint in err, err
    assert not (state_dir / "identity.json").exists()


def test_certificate_is_reused_on_restart(workdir):
    first = start(workdir, "tls-restart-1", "0.0.0.0")
    first.stop()
    cert_bytes = first.cert.read_bytes()
    again = start(workdir, "tls-restart-2", "0.0.0.0", data_dir=first.data_dir)
    try:
        assert again.fingerprint == first.fingerprint
        assert again.cert.read_bytes() == cert_bytes
        poll("/healthz after restart", lambda: healthz(again.endpoint, again.cert), STARTUP_TIMEOUT)
    finally:
        again.stop()


def test_insecure_http_serves_plain_http_on_all_interfaces(workdir):
    s = start(workdir, "insecure", "0.0.0.0", "--insecure-http")
    try:
        assert s.endpoint.startswith("http://127.0.0.1:"), s.endpoint
        poll("/healthz over plain HTTP", lambda: healthz(s.endpoint), STARTUP_TIMEOUT)
        assert not (s.data_dir / "tls").exists()
        time.sleep(0.2)
        assert "--insecure-http" in s.proc.log_path.read_text("utf-8", "replace")
    finally:
        s.stop()


def test_operator_certificate_serves_tls_on_loopback(workdir):
    """`--tls-cert/--tls-key` on 127.0.0.1 (whose default is plain HTTP)."""
    source = start(workdir, "cert-source", "0.0.0.0")
    source.stop()
    cert, key = workdir / "operator-cert.pem", workdir / "operator-key.pem"
    shutil.copy(source.cert, cert)
    shutil.copy(source.data_dir / "tls" / "key.pem", key)
    s = start(workdir, "operator-cert", "127.0.0.1", "--tls-cert", str(cert), "--tls-key", str(key))
    try:
        assert s.endpoint.startswith("https://127.0.0.1:"), s.endpoint
        assert s.fingerprint == der_fingerprint(cert)
        poll("/healthz over TLS", lambda: healthz(s.endpoint, cert), STARTUP_TIMEOUT)
        assert not (s.data_dir / "tls").exists()
    finally:
        s.stop()


def test_loopback_without_a_certificate_stays_plain_http(workdir):
    s = start(workdir, "loopback", "127.0.0.1")
    try:
        assert s.endpoint.startswith("http://127.0.0.1:"), s.endpoint
        poll("/healthz", lambda: healthz(s.endpoint), STARTUP_TIMEOUT)
    finally:
        s.stop()
