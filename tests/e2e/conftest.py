"""Fixtures for the fleetrun end-to-end suite.

One `fleetrun server --local-node` runs for the whole session on a free port with a temporary data
dir; extra real agents (`fleetrun agent`) are registered through the SSM API on demand. Everything
is driven through unmodified clients: boto3/botocore and the AWS CLI v1.

Tests share the server, so each one creates its own commands and asserts only on data it created
(or on properties every returned row must have).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest
from botocore.config import Config

REGION = "us-east-1"
# Each server creates its own administrator key on first start and prints it in its banner;
# start_server records it here by endpoint, and make_client signs with it.
CREDENTIALS_BY_ENDPOINT: dict[str, dict] = {}
BANNER_EXPORT = re.compile(r"export AWS_ACCESS_KEY_ID=(\S+) AWS_SECRET_ACCESS_KEY=(\S+)")
DOCUMENT = "AWS-RunShellScript"
TERMINAL = frozenset({"Success", "Failed", "TimedOut", "Cancelled"})
STARTUP_TIMEOUT = 60.0
REPO_ROOT = Path(__file__).resolve().parents[2]
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")

# FLEETRUN_TEST_STORE=postgres runs every server of the suite on PostgreSQL instead of its
# embedded SQLite: each data dir gets its own database (created here, dropped when the session
# ends), so a server restarted on the same data dir finds its data again.
TEST_STORE = os.environ.get("FLEETRUN_TEST_STORE", "sqlite")
PG_ADMIN_URL = os.environ.get("FLEETRUN_TEST_PG_URL", "postgres://postgres@127.0.0.1:5432/postgres")
DATABASES: dict[Path, str] = {}


def psql(sql: str) -> None:
    subprocess.run(
        ["psql", PG_ADMIN_URL, "-v", "ON_ERROR_STOP=1", "-qAtc", sql],
        check=True, capture_output=True, timeout=60,
    )


def store_args(data_dir: Path) -> list[str]:
    """The `--store` arguments for a server on `data_dir` (none on SQLite, the default)."""
    if TEST_STORE == "sqlite":
        return []
    assert TEST_STORE == "postgres", f"FLEETRUN_TEST_STORE={TEST_STORE!r}: sqlite or postgres"
    key = Path(data_dir).resolve()
    if key not in DATABASES:
        name = f"fleetrun_e2e_{os.getpid()}_{len(DATABASES)}"
        psql(f"CREATE DATABASE {name}")
        DATABASES[key] = name
    base, _, _ = PG_ADMIN_URL.rpartition("/")
    return ["--store", f"{base}/{DATABASES[key]}"]


def drop_databases() -> None:
    for name in DATABASES.values():
        psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    DATABASES.clear()


# Never send loopback traffic through a proxy configured on the machine.
for _var in ("NO_PROXY", "no_proxy"):
    _current = os.environ.get(_var, "")
    os.environ[_var] = ",".join(filter(None, [_current, "127.0.0.1", "localhost"]))


def fleetrun_binary() -> str:
    path = os.environ.get("FLEETRUN_BIN")
    if not path:
        target = os.environ.get("CARGO_TARGET_DIR", "target")
        path = str(REPO_ROOT / target / "debug" / "fleetrun")
    if not os.path.isabs(path):
        path = str(REPO_ROOT / path)
    if not os.access(path, os.X_OK):
        pytest.exit(
            f"fleetrun binary not found at {path}: build it (cargo build -p fleetrun) "
            "or set FLEETRUN_BIN",
            returncode=2,
        )
    return path


def aws_cli() -> str:
    """The `aws` command next to this interpreter (the venv's awscli v1), else the one on PATH."""
    here = Path(sys.executable).parent / "aws"
    if here.exists():
        return str(here)
    found = shutil.which("aws")
    if not found:
        pytest.exit("the `aws` command (awscli) is not installed; use scripts/e2e.sh", returncode=2)
    return found


WEBHOOK_TOPIC = "arn:aws:sns:us-east-1:000000000000:fleetrun-e2e"


def reserve_port() -> socket.socket:
    """A TCP socket bound to a free loopback port and not listening: connections to it are refused
    until its owner listens, and no other process can take the port meanwhile."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    return s


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def poll(what: str, fn, timeout: float, interval: float = 0.1):
    """Calls `fn` until it returns something truthy; fails after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        last = fn()
        if last:
            return last
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


class Proc:
    """A child process with stdout collected line by line and stderr kept in a log file."""

    def __init__(
        self, name: str, argv: list[str], log_dir: Path, env: dict | None = None, cwd: Path | None = None
    ):
        self.name = name
        self.log_path = log_dir / f"{name}.stderr.log"
        self._log = open(self.log_path, "wb")
        self.popen = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._log,
            env=env if env is not None else dict(os.environ, NO_COLOR="1"),
            cwd=cwd,
        )
        self.lines: list[str] = []
        self._eof = False
        self._cv = threading.Condition()
        threading.Thread(target=self._pump, name=f"{name}-stdout", daemon=True).start()

    def _pump(self) -> None:
        assert self.popen.stdout is not None
        for raw in self.popen.stdout:
            with self._cv:
                self.lines.append(raw.decode("utf-8", "replace").rstrip("\n"))
                self._cv.notify_all()
        with self._cv:
            self._eof = True
            self._cv.notify_all()

    def wait_for_line(self, pattern: str, timeout: float) -> re.Match:
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._cv:
            while True:
                for line in self.lines:
                    m = regex.search(line)
                    if m:
                        return m
                remaining = deadline - time.monotonic()
                if self._eof or remaining <= 0:
                    raise AssertionError(
                        f"{self.name}: no stdout line matching {pattern!r} "
                        f"(exit code {self.popen.poll()}); stdout={self.lines!r}\n"
                        f"stderr tail:\n{self.stderr_tail()}"
                    )
                self._cv.wait(min(remaining, 0.5))

    def running(self) -> bool:
        return self.popen.poll() is None

    def stop(self, grace: float = 10.0) -> int:
        """SIGTERM, then SIGKILL after `grace` seconds."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(grace)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)
        if not self._log.closed:
            self._log.close()
        return self.popen.returncode

    def stderr_tail(self, lines: int = 80) -> str:
        try:
            text = self.log_path.read_text("utf-8", "replace")
        except OSError as e:
            return f"<cannot read {self.log_path}: {e}>"
        text = ANSI_ESCAPE.sub("", text)
        return "\n".join(text.splitlines()[-lines:])


@dataclass
class Agent:
    proc: Proc
    instance_id: str
    state_dir: Path

    def stop(self) -> int:
        return self.proc.stop()


def healthy(endpoint: str) -> bool:
    try:
        with urllib.request.urlopen(f"{endpoint}/healthz", timeout=2) as r:
            return r.status == 200
    except (urllib.error.URLError, OSError):
        return False


@dataclass
class Server:
    proc: Proc
    endpoint: str
    node_id: str | None  # the local node, with --local-node
    credentials: dict  # the administrator key from the banner (AWS_ACCESS_KEY_ID, ...)


def start_server(
    binary: str, data_dir: Path, log_dir: Path, name: str, local_node: bool, cwd: Path | None = None,
    env: dict | None = None, store: str | None = None, admin: dict | None = None,
    extra_args: list[str] | None = None,
) -> Server:
    """Starts `fleetrun server` on a free port; returns once the banner is printed and /healthz answers.
    `env`: the server's whole environment (default: ours with NO_COLOR=1). `store`: a --store URL
    instead of the run's default; `admin`: the credentials of a store that already has its
    administrator key (a replica's banner prints none)."""
    last_error = None
    for attempt in range(3):  # a free port can be taken between probing and binding
        port = free_port()
        argv = [
            binary, "server",
            "--listen", f"127.0.0.1:{port}",
            "--data-dir", str(data_dir),
            "--region", REGION,
            *(["--store", store] if store else store_args(data_dir)),
        ]
        if local_node:
            argv.append("--local-node")
        argv += extra_args or []
        proc = Proc(
            name if attempt == 0 else f"{name}-retry{attempt}", argv, log_dir, env=env, cwd=cwd
        )
        try:
            banner = proc.wait_for_line(
                r"this machine is managed node (mi-\w{17})\b|no local node", STARTUP_TIMEOUT
            )
        except AssertionError as e:
            proc.stop()
            last_error = e
            continue
        endpoint = proc.wait_for_line(r"serving the SSM Run Command API at (http://\S+)", 1).group(1)
        assert endpoint == f"http://127.0.0.1:{port}", endpoint
        assert (banner.group(1) is not None) == local_node, banner.group(0)
        if admin is None:
            key = proc.wait_for_line(BANNER_EXPORT.pattern, 5)
            credentials = {
                "AWS_ACCESS_KEY_ID": key.group(1),
                "AWS_SECRET_ACCESS_KEY": key.group(2),
                "AWS_DEFAULT_REGION": REGION,
            }
        else:
            credentials = dict(admin)
        CREDENTIALS_BY_ENDPOINT[endpoint] = credentials
        poll("/healthz", lambda: healthy(endpoint), STARTUP_TIMEOUT)
        return Server(proc, endpoint, banner.group(1), credentials)
    raise AssertionError(f"fleetrun server did not start: {last_error}")


def make_client(
    endpoint: str,
    parameter_validation: bool = True,
    credentials: dict | None = None,
    region: str = REGION,
    service: str = "ssm",
):
    """boto3 client of `service` (SSM unless said: logs, cloudwatch, resource-groups…) for
    `endpoint`, signing with that server's administrator key unless `credentials`
    ({"AWS_ACCESS_KEY_ID": …, "AWS_SECRET_ACCESS_KEY": …}) are given."""
    creds = credentials or CREDENTIALS_BY_ENDPOINT[endpoint]
    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name=region,
        aws_access_key_id=creds["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=creds["AWS_SECRET_ACCESS_KEY"],
        config=Config(
            retries={"max_attempts": 1},
            parameter_validation=parameter_validation,
            connect_timeout=5,
            read_timeout=30,
        ),
    )


def signed_headers(
    endpoint: str, credentials: dict, headers: dict, body: bytes, region: str = REGION,
    service: str = "ssm",
) -> dict:
    """`headers` plus X-Amz-Date and Authorization, signed by botocore's own SigV4 signer."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    request = AWSRequest(method="POST", url=endpoint + "/", data=body, headers=dict(headers))
    creds = Credentials(credentials["AWS_ACCESS_KEY_ID"], credentials["AWS_SECRET_ACCESS_KEY"])
    SigV4Auth(creds, service, region).add_auth(request)
    return dict(request.headers.items())


def wait_invocation(client, command_id: str, node: str, statuses=TERMINAL, timeout: float = 30.0) -> dict:
    """Polls GetCommandInvocation until its Status is one of `statuses`."""

    def reached():
        inv = client.get_command_invocation(CommandId=command_id, InstanceId=node)
        return inv if inv["Status"] in statuses else None

    return poll(f"invocation {command_id}/{node} in {sorted(statuses)}", reached, timeout)


class S3Store:
    """A real S3-protocol server (s3s-fs, a filesystem-backed S3 implementation from crates.io)
    on a loopback port, with its own key; `client()` is a boto3 S3 client for it."""

    def __init__(
        self, root: Path, log_dir: Path, name: str = "s3s-fs", port: int | None = None,
        keys: dict | None = None,
    ):
        self.binary = os.environ.get("FLEETRUN_S3S_FS") or shutil.which("s3s-fs") or str(
            Path.home() / ".cargo/bin/s3s-fs"
        )
        assert os.path.exists(self.binary), (
            "s3s-fs is needed for the S3 output tests: scripts/e2e.sh installs it "
            "(cargo install s3s-fs@0.14.1 --features binary)"
        )
        root.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        keys = keys or {
            "AWS_ACCESS_KEY_ID": "S3TESTKEY",
            "AWS_SECRET_ACCESS_KEY": "s3-test-secret-" + os.urandom(8).hex(),
        }
        self.access_key, self.secret_key = keys["AWS_ACCESS_KEY_ID"], keys["AWS_SECRET_ACCESS_KEY"]
        self.proc = Proc(
            name,
            [self.binary, "--host", "127.0.0.1", "--port", str(self.port),
             "--access-key", self.access_key, "--secret-key", self.secret_key, str(root)],
            log_dir,
        )
        poll("s3s-fs to listen", self._listening, STARTUP_TIMEOUT, interval=0.05)

    def _listening(self) -> bool:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            return s.connect_ex(("127.0.0.1", self.port)) == 0

    def env(self) -> dict:
        """What a fleetrun server needs in its environment to sign S3 requests."""
        return {"AWS_ACCESS_KEY_ID": self.access_key, "AWS_SECRET_ACCESS_KEY": self.secret_key}

    def client(self):
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 2}),
        )

    def stop(self) -> None:
        self.proc.stop()


def server_env(extra: dict) -> dict:
    """The suite's environment for a fleetrun server, without the caller's AWS settings, plus
    `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env["NO_COLOR"] = "1"
    env.update(extra)
    return env


class Fleet:
    """The running server plus helpers shared by the tests."""

    def __init__(self, binary: str, workdir: Path):
        self.binary = binary
        self.workdir = workdir
        self.logs = workdir / "logs"
        self.logs.mkdir()
        self.data_dir = workdir / "data"
        self.agents: list[Agent] = []
        self._agent_seq = 0
        # The topic test_notifications.py sends to; its receiver binds the port first thing.
        self.webhook_socket = reserve_port()
        self.webhook_url = f"http://127.0.0.1:{self.webhook_socket.getsockname()[1]}/hook"
        # Where test_s3_output.py's commands put their output.
        self.s3 = S3Store(workdir / "s3", self.logs)
        server = start_server(
            binary, self.data_dir, self.logs, "server", local_node=True,
            env=server_env(self.s3.env()),
            extra_args=[
                "--webhook", f"{WEBHOOK_TOPIC}={self.webhook_url}",
                "--webhook-retry-max-secs", "2",
                "--s3-endpoint", self.s3.endpoint,
            ],
        )
        self.server, self.endpoint, self.node_id = server.proc, server.endpoint, server.node_id
        self.credentials = server.credentials
        try:
            self.ssm = self.client()
            # For error tests: botocore would reject some inputs (e.g. TimeoutSeconds < 30) itself.
            self.ssm_unchecked = self.client(parameter_validation=False)
            self.cli_env = self._cli_env()
        except BaseException:
            self.server.stop()
            raise

    # ----------------------------------------------------------------- processes

    def add_agents(self, count: int, timeout: float = 30.0) -> list[Agent]:
        """Creates one activation for `count` nodes, starts that many `fleetrun agent` processes
        (each with its own state dir) and waits until DescribeInstanceInformation shows them Online."""
        act = self.ssm.create_activation(
            IamRole="fleetrun-e2e", RegistrationLimit=count, Description="e2e agents"
        )
        started = [
            self.start_agent(self.next_agent_dir(), act["ActivationId"], act["ActivationCode"])
            for _ in range(count)
        ]

        def identities():
            ids = []
            for proc, state_dir in started:
                path = state_dir / "identity.json"
                if not proc.running():
                    raise AssertionError(
                        f"{proc.name} exited with {proc.popen.returncode}:\n{proc.stderr_tail()}"
                    )
                if not path.exists():
                    return None
                try:
                    ids.append(json.loads(path.read_text())["instanceId"])
                except (ValueError, KeyError):
                    return None  # being written
            return ids

        ids = poll("agents to register", identities, timeout)
        agents = [Agent(proc, node, d) for (proc, d), node in zip(started, ids)]
        self.agents.extend(agents)

        def online():
            info = self.ssm.describe_instance_information(
                Filters=[{"Key": "ActivationIds", "Values": [act["ActivationId"]]}]
            )["InstanceInformationList"]
            # Registration (the one-shot step) already counts as a ping: wait for a poll after
            # it, so the agent process is up (and handles SIGTERM) before a test stops it.
            status = {
                i["InstanceId"]: i["PingStatus"] == "Online"
                and i["LastPingDateTime"] > i["RegistrationDate"]
                for i in info
            }
            return all(status.get(a.instance_id) for a in agents)

        poll("agents to be Online", online, timeout, interval=0.2)
        return agents

    def next_agent_dir(self) -> Path:
        self._agent_seq += 1
        return self.workdir / f"agent-{self._agent_seq}"

    def start_agent(
        self, state_dir: Path, activation_id: str | None = None, activation_code: str | None = None
    ) -> tuple[Proc, Path]:
        """Spawns `fleetrun agent`; without an activation it must reuse the identity in state_dir.
        With one, the node is first registered by the one-shot `fleetrun agent register`, the code
        on its standard input: no activation code ever sits on a command line."""
        argv = [self.binary, "agent", "--server", self.endpoint, "--state-dir", str(state_dir)]
        if activation_id:
            registered = subprocess.run(
                argv[:2] + ["register"] + argv[2:]
                + ["--activation-id", activation_id, "--activation-code-file", "-"],
                input=(activation_code or "").encode(),
                capture_output=True,
                timeout=60,
            )
            assert registered.returncode == 0, registered.stderr.decode("utf-8", "replace")
        argv += ["--region", REGION]
        name = state_dir.name
        if (self.logs / f"{name}.stderr.log").exists():
            name += f"-{int(time.monotonic() * 1000)}"
        return Proc(name, argv, self.logs), state_dir

    def restart_agent(self, agent: Agent) -> Agent:
        """Starts a stopped agent again from its state dir, without activation flags."""
        assert not agent.proc.running()
        proc, _ = self.start_agent(agent.state_dir)
        again = Agent(proc, agent.instance_id, agent.state_dir)
        self.agents.append(again)
        return again

    def close(self) -> None:
        for agent in self.agents:
            agent.stop()
        self.server.stop()
        self.s3.stop()

    def stderr_report(self) -> str:
        parts = [f"--- server stderr ({self.server.log_path}) ---\n{self.server.stderr_tail()}"]
        for agent in self.agents:
            parts.append(f"--- {agent.proc.name} stderr ---\n{agent.proc.stderr_tail(30)}")
        return "\n".join(parts)

    # ----------------------------------------------------------------- clients

    def client(self, parameter_validation: bool = True):
        return make_client(self.endpoint, parameter_validation)

    def _cli_env(self) -> dict:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("AWS_") or k in ("AWS_CA_BUNDLE",)
        }
        env.update(self.credentials)
        env.update(
            AWS_CONFIG_FILE=str(self.workdir / "aws-config-none"),
            AWS_SHARED_CREDENTIALS_FILE=str(self.workdir / "aws-credentials-none"),
            AWS_PAGER="",
            AWS_MAX_ATTEMPTS="1",
        )
        return env

    def aws(self, *args: str, timeout: float = 150.0) -> subprocess.CompletedProcess:
        """Runs `aws ssm <args> --endpoint-url <server>` and returns the completed process."""
        argv = [aws_cli(), "ssm", *args, "--endpoint-url", self.endpoint, "--output", "json"]
        return subprocess.run(
            argv, env=self.cli_env, capture_output=True, text=True, timeout=timeout
        )

    def aws_json(self, *args: str) -> dict:
        r = self.aws(*args)
        assert r.returncode == 0, f"aws ssm {' '.join(args)} failed ({r.returncode}):\n{r.stderr}"
        return json.loads(r.stdout) if r.stdout.strip() else {}

    def raw(self, target: str | None, body: bytes) -> tuple[int, dict, bytes]:
        """POSTs `body` to / with an optional X-Amz-Target; returns (status, lower-cased headers, body)."""
        headers = {"Content-Type": "application/x-amz-json-1.1"}
        if target is not None:
            headers["X-Amz-Target"] = target
        headers = signed_headers(self.endpoint, self.credentials, headers, body)
        request = urllib.request.Request(self.endpoint + "/", data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=10) as r:
                status, head, payload = r.status, r.headers, r.read()
        except urllib.error.HTTPError as e:
            status, head, payload = e.code, e.headers, e.read()
        return status, {k.lower(): v for k, v in head.items()}, payload

    # ----------------------------------------------------------------- commands

    def send(self, nodes: list[str], commands: list[str], **kwargs) -> dict:
        """SendCommand with AWS-RunShellScript; extra document parameters via `parameters`."""
        params = {"commands": list(commands), **kwargs.pop("parameters", {})}
        return self.ssm.send_command(
            InstanceIds=list(nodes), DocumentName=DOCUMENT, Parameters=params, **kwargs
        )["Command"]

    def run(self, node: str, commands: list[str], **kwargs) -> str:
        return self.send([node], commands, **kwargs)["CommandId"]

    def invocation(self, command_id: str, node: str) -> dict:
        return self.ssm.get_command_invocation(CommandId=command_id, InstanceId=node)

    def wait_invocation(
        self, command_id: str, node: str, statuses=TERMINAL, timeout: float = 30.0
    ) -> dict:
        return wait_invocation(self.ssm, command_id, node, statuses, timeout)

    def command(self, command_id: str) -> dict:
        commands = self.ssm.list_commands(CommandId=command_id)["Commands"]
        assert len(commands) == 1, commands
        return commands[0]

    def wait_command(self, command_id: str, statuses=TERMINAL, timeout: float = 30.0) -> dict:
        def reached():
            c = self.command(command_id)
            return c if c["Status"] in statuses else None

        return poll(f"command {command_id} in {sorted(statuses)}", reached, timeout)


_FLEET: Fleet | None = None


@pytest.fixture(scope="session")
def fleet(request):
    """The running fleetrun server (with its local node) for the whole session."""
    global _FLEET
    workdir = Path(tempfile.mkdtemp(prefix="fleetrun-e2e-"))
    try:
        f = Fleet(fleetrun_binary(), workdir)
    except BaseException:
        sys.stderr.write(f"\nfleetrun logs kept in {workdir / 'logs'}\n")
        raise
    _FLEET = f
    yield f
    _FLEET = None
    f.close()
    if request.session.testsfailed:
        sys.stderr.write(f"\nfleetrun logs kept in {workdir / 'logs'}\n")
    else:
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def node(fleet) -> str:
    """The server's own managed node (`--local-node`)."""
    return fleet.node_id


@pytest.fixture(scope="session")
def ssm(fleet):
    return fleet.ssm


@pytest.fixture(scope="session")
def two_agents(fleet) -> list[Agent]:
    """Two extra real agents, registered with one activation and Online."""
    return fleet.add_agents(2)


@pytest.fixture(scope="session")
def stopped_node(fleet) -> str:
    """A registered node whose agent died (SIGKILL, so it said no goodbye): commands sent to it
    stay Pending until its ping timeout passes (an agent stopped cleanly would have made the node
    ConnectionLost at once, and its work Delayed; see test_agent_behaviour.py)."""
    (agent,) = fleet.add_agents(1)
    agent.proc.popen.kill()
    agent.proc.popen.wait(10)
    return agent.instance_id


def pytest_sessionfinish(session, exitstatus):
    if DATABASES:
        drop_databases()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed and _FLEET is not None:
        report.sections.append(("fleetrun stderr (tail)", _FLEET.stderr_report()))
