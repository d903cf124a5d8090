"""Faults on the scale-out store (PostgreSQL only; the SQLite pass skips this file):

* kill -9 of one of two replicas in the middle of a 1,000-invocation fan-out: every agent carries on
  through the other replica (each was given both URLs), no invocation is lost or run twice, every
  command ends terminal with truthful counts;
* a PostgreSQL restart in the middle of a run: API calls during the outage answer
  `InternalServerError` promptly (JSON, never a hang or an HTML page), and afterwards the server
  and its agent resume by themselves with nothing lost.

The second test runs its own PostgreSQL cluster (initdb + pg_ctl from the machine's PostgreSQL
installation, as the `postgres` user when run as root) so that restarting it disturbs nobody.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, ReadTimeoutError

from conftest import (
    DOCUMENT,
    REGION,
    TERMINAL,
    TEST_STORE,
    Proc,
    free_port,
    make_client,
    poll,
    psql,
    signed_headers,
    start_server,
    store_args,
    wait_invocation,
)

pytestmark = pytest.mark.skipif(
    TEST_STORE != "postgres", reason="replicas and database faults need FLEETRUN_TEST_STORE=postgres"
)

AGENTS = 20
COMMANDS = 50  # x AGENTS = 1,000 invocations


def _register_agents(binary: str, servers: list[str], client, workdir: Path, logs: Path) -> list[tuple[Proc, Path]]:
    """Registers one node per entry of `servers` (each a comma-separated --server list) and starts
    its agent; returns (process, state dir) pairs."""
    act = client.create_activation(IamRole="fleetrun-e2e", RegistrationLimit=len(servers))
    started = []
    for i, urls in enumerate(servers):
        state_dir = workdir / f"agent-{i}"
        base = [binary, "agent", "--server", urls, "--state-dir", str(state_dir)]
        registered = subprocess.run(
            [binary, "agent", "register", *base[2:]]
            + ["--activation-id", act["ActivationId"], "--activation-code-file", "-"],
            input=act["ActivationCode"].encode(), capture_output=True, timeout=60,
        )
        assert registered.returncode == 0, registered.stderr.decode("utf-8", "replace")
        started.append((Proc(f"agent-{i}", [*base, "--region", REGION], logs), state_dir))
    return started


def _instance_ids(started: list[tuple[Proc, Path]]) -> list[str]:
    return [json.loads((d / "identity.json").read_text())["instanceId"] for _, d in started]


def _wait_online(client, nodes: list[str], timeout: float = 90.0) -> None:
    def online():
        info = []
        for page in client.get_paginator("describe_instance_information").paginate(
            Filters=[{"Key": "InstanceIds", "Values": nodes}]
        ):
            info += page["InstanceInformationList"]
        up = {
            i["InstanceId"] for i in info
            if i["PingStatus"] == "Online" and i["LastPingDateTime"] > i["RegistrationDate"]
        }
        return up >= set(nodes)

    poll(f"{len(nodes)} agents to be Online", online, timeout, interval=0.5)


def _stop_all(procs: list[Proc]) -> None:
    for p in procs:
        p.stop(grace=5)


def _report(procs: list[Proc]) -> str:
    return "\n".join(f"--- {p.name} ---\n{p.stderr_tail(25)}" for p in procs)


def test_kill_9_of_one_replica_mid_fan_out_loses_nothing_and_runs_nothing_twice(fleet, tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    marks = tmp_path / "marks"
    marks.mkdir()
    store = store_args(tmp_path / "shared")[1]
    procs: list[Proc] = []
    try:
        a = start_server(fleet.binary, tmp_path / "a", logs, "replica-a", local_node=False, store=store)
        procs.append(a.proc)
        b = start_server(
            fleet.binary, tmp_path / "b", logs, "replica-b", local_node=False, store=store,
            admin=a.credentials,
        )
        procs.append(b.proc)
        ssm_a, ssm_b = make_client(a.endpoint), make_client(b.endpoint)
        # Half the agents poll A first, half B first; every one knows both.
        urls = [f"{a.endpoint},{b.endpoint}" if i % 2 == 0 else f"{b.endpoint},{a.endpoint}" for i in range(AGENTS)]
        started = _register_agents(fleet.binary, urls, ssm_a, tmp_path, logs)
        procs += [p for p, _ in started]
        nodes = _instance_ids(started)
        _wait_online(ssm_b, nodes)

        # Each script takes a moment, so that work is running on agents of A when A dies and its
        # results must reach B.
        script = f'echo "$AWS_SSM_INSTANCE_ID" >> {marks}/{{i}}; sleep 0.3; echo ran {{i}}'
        sent: list[str] = []
        for i in range(COMMANDS):
            if i == COMMANDS // 3:
                # Mid fan-out: the first third is sent and running, A dies without a word.
                a.proc.popen.kill()
                a.proc.popen.wait(10)
            via = ssm_a if a.proc.running() else ssm_b
            command = via.send_command(
                InstanceIds=nodes, DocumentName=DOCUMENT, MaxConcurrency="50", MaxErrors="0",
                Parameters={"commands": [script.format(i=i)]},
            )["Command"]
            sent.append(command["CommandId"])

        def all_terminal():
            done = []
            for command_id in sent:
                (c,) = ssm_b.list_commands(CommandId=command_id)["Commands"]
                if c["Status"] not in TERMINAL:
                    return None
                done.append(c)
            return done

        commands = poll("every command terminal through replica B", all_terminal, 180, interval=1.0)
        for c in commands:
            assert c["Status"] == "Success", c
            assert (c["TargetCount"], c["CompletedCount"], c["ErrorCount"], c["DeliveryTimedOutCount"]) == (
                AGENTS, AGENTS, 0, 0,
            ), c
        invocations = 0
        for command_id in sent:
            for page in ssm_b.get_paginator("list_command_invocations").paginate(CommandId=command_id):
                for inv in page["CommandInvocations"]:
                    assert inv["Status"] == "Success", inv
                    invocations += 1
        assert invocations == AGENTS * COMMANDS
        # Each script appended its node's id to the command's file once: nothing lost, nothing twice.
        for i in range(COMMANDS):
            ran = (marks / str(i)).read_text().split()
            assert sorted(ran) == sorted(nodes), (i, sorted(ran))
        # The agents that polled A first really did move to B.
        stayed = [p.name for p, _ in started[::2] if "trying the next one" not in p.stderr_tail(2000)]
        assert not stayed, f"agents that polled A first and never handed over: {stayed}\n{_report(procs)}"
    except BaseException:
        print(_report(procs))
        raise
    finally:
        _stop_all(procs)


# ----------------------------------------------------------------------------- PostgreSQL restart


def _pg_bin(name: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    for root in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (root / name).exists():
            return str(root / name)
    pytest.fail(f"{name} not found (PostgreSQL server binaries); install postgresql")


class PrivateCluster:
    """A throw-away PostgreSQL cluster on a free port, trust auth, owned by `postgres` when we are
    root (PostgreSQL refuses to run as root)."""

    def __init__(self, root: Path):
        self.root = root
        self.data = root / "pgdata"
        self.port = free_port()
        self.log = root / "postgres.log"
        self._as = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        root.mkdir(parents=True, exist_ok=True)
        if self._as:
            shutil.chown(root, "postgres")
        self._run(_pg_bin("initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")
        self.start()

    def _run(self, *argv: str) -> None:
        r = subprocess.run([*self._as, *argv], capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, f"{argv[0]} failed: {r.stdout}{r.stderr}"

    def start(self) -> None:
        self._run(
            _pg_bin("pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60",
            "-o", f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off",
            "start",
        )

    def stop(self) -> None:
        self._run(_pg_bin("pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")

    def url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/postgres"

    def close(self) -> None:
        subprocess.run(
            [*self._as, _pg_bin("pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop"],
            capture_output=True, timeout=60,
        )


def _raw_list_commands(endpoint: str, credentials: dict) -> tuple[int, str, bytes, float]:
    """One signed ListCommands over plain HTTP: (status, content type, body, seconds taken)."""
    body = b"{}"
    headers = signed_headers(
        endpoint, credentials,
        {"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": "AmazonSSM.ListCommands"},
        body,
    )
    request = urllib.request.Request(endpoint + "/", data=body, headers=headers, method="POST")
    t0 = time.monotonic()
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            status, ctype, payload = r.status, r.headers.get("Content-Type", ""), r.read()
    except urllib.error.HTTPError as e:
        status, ctype, payload = e.code, e.headers.get("Content-Type", ""), e.read()
    return status, ctype, payload, time.monotonic() - t0


def test_a_postgresql_restart_mid_run_answers_internal_server_error_then_resumes(fleet, tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    # Not under tmp_path: pytest's base temp dir is private to root, and the cluster runs as postgres.
    cluster = PrivateCluster(Path(tempfile.mkdtemp(prefix="fleetrun-pg-")))
    procs: list[Proc] = []
    try:
        server = start_server(
            fleet.binary, tmp_path / "data", logs, "server-on-private-pg", local_node=False,
            store=cluster.url(),
        )
        procs.append(server.proc)
        ssm = make_client(server.endpoint)
        started = _register_agents(fleet.binary, [server.endpoint], ssm, tmp_path, logs)
        procs += [p for p, _ in started]
        (node,) = _instance_ids(started)
        _wait_online(ssm, [node])

        running = ssm.send_command(
            InstanceIds=[node], DocumentName=DOCUMENT,
            Parameters={"commands": ["sleep 6", "echo survived"]},
        )["Command"]["CommandId"]
        wait_invocation(ssm, running, node, statuses={"InProgress"}, timeout=30)

        cluster.stop()
        # During the outage: prompt, JSON, InternalServerError; repeatedly, not just once.
        for _ in range(3):
            status, ctype, payload, took = _raw_list_commands(server.endpoint, server.credentials)
            assert status == 500, (status, payload)
            assert "json" in ctype, ctype
            assert json.loads(payload)["__type"].endswith("InternalServerError"), payload
            # Refused connections fail at once; only a database that hangs would cost the pool's
            # 5 s connect timeout.
            assert took < 5, f"an outage answer took {took:.1f}s"
        with pytest.raises(ClientError) as refused:
            ssm.send_command(
                InstanceIds=[node], DocumentName=DOCUMENT, Parameters={"commands": ["echo lost?"]}
            )
        assert refused.value.response["Error"]["Code"] == "InternalServerError"
        time.sleep(8)  # the running script finishes while the database is down
        assert server.proc.running(), server.proc.stderr_tail()

        cluster.start()

        def answers():
            try:
                return ssm.list_commands(CommandId=running)["Commands"]
            except (ClientError, EndpointConnectionError, ReadTimeoutError):
                return None

        poll("the server to answer again after the restart", answers, 60, interval=0.5)
        done = wait_invocation(ssm, running, node, timeout=90)
        assert (done["Status"], done["StandardOutputContent"]) == ("Success", "survived\n"), done
        # New work reaches the agent through a fresh LISTEN connection.
        after = ssm.send_command(
            InstanceIds=[node], DocumentName=DOCUMENT, Parameters={"commands": ["echo after"]}
        )["Command"]["CommandId"]
        t0 = time.monotonic()
        again = wait_invocation(ssm, after, node, timeout=60)
        assert (again["Status"], again["StandardOutputContent"]) == ("Success", "after\n"), again
        assert time.monotonic() - t0 < 30
        assert ssm.list_commands(CommandId=running)["Commands"][0]["Status"] == "Success"
    except BaseException:
        print(_report(procs))
        raise
    finally:
        _stop_all(procs)
        cluster.close()
        shutil.rmtree(cluster.root, ignore_errors=True)
