"""The README's walk-through, run as a new user would run it: the fenced `sh` blocks are taken
from README.md itself (so the text and the test cannot drift apart) and run in order in one
`bash -euo pipefail` session, in a fresh directory, against a fresh server started the way setup
command 1 starts it.

What the test adds to the text, and nothing else:

* a bash function `cargo` that maps `cargo run [--quiet] --release -- ARGS` to the already-built
  binary (`FLEETRUN_BIN ARGS`), so nothing is compiled;
* the port, when 8089 is taken on this machine: `127.0.0.1:8089` in the text becomes the free port
  chosen, and `FLEETRUN_LISTEN` / `FLEETRUN_ENDPOINT` tell the server and `fleetrun admin` (whose
  default is 8089) the same;
* a clean `aws` environment (no `~/.aws` config, no `AWS_*` variables of the caller's), the venv's
  `aws` first on PATH, and a timeout on the whole session.

Blocks preceded by `<!-- not run by the walk-through test: <why> -->` are skipped; the test checks
that they are few and say why. After the session it asserts, through boto3, what the README
promises (both nodes Success, TargetCount 1 for the tag example, Failed / 3, TimedOut, Cancelled,
document version 2 as $LATEST and $DEFAULT, AccessDenied for the auditor key, ...).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from conftest import (
    BANNER_EXPORT,
    REPO_ROOT,
    Proc,
    aws_cli,
    fleetrun_binary,
    make_client,
    poll,
    store_args,
)

README = REPO_ROOT / "README.md"
SKIP_MARKER = re.compile(r"<!--\s*not run by the walk-through test:\s*(.+?)\s*-->")
FENCE = re.compile(r"^```(\S*)\s*$")
# Generous: the waits in the text (waiters poll every 5 s, a 10 s execution timeout) take ~1 min.
SESSION_TIMEOUT = 300
DEFAULT_PORT = 8089
# The README has exactly these blocks that must not run here: the setup (the test is its line 1;
# line 2 runs every test, this one included), the second machine over TLS, the servers sharing a
# PostgreSQL database (crates/fleetrun-server/tests/replicas.rs covers them), the webhook receiver
# (test_notifications.py), the S3 server (test_s3_output.py), and the agent installed as a root
# service on another machine (test_install.py).
MAX_SKIPPED = 6

CARGO_SHIM = r'''
# Added by tests/e2e/test_readme.py: `cargo run [--quiet] --release -- ARGS` runs the binary
# already built for the tests ($FLEETRUN_BIN) instead of compiling.
cargo() {
    if [ "${1-}" != run ]; then echo "test_readme: unexpected: cargo $*" >&2; return 2; fi
    shift
    while [ $# -gt 0 ] && [ "$1" != -- ]; do
        case "$1" in
            --release|--quiet|-q) shift ;;
            *) echo "test_readme: unexpected cargo run flag $1" >&2; return 2 ;;
        esac
    done
    shift
    @EXEC@"$FLEETRUN_BIN" "$@"
}
'''


def cargo_shim(exec_: bool = False) -> str:
    """The `cargo` function; with `exec_` the binary replaces the shell (for the server)."""
    return CARGO_SHIM.replace("@EXEC@", "exec " if exec_ else "")


def sh_blocks(text: str) -> list[dict]:
    """Every fenced `sh` block of the README: its first line number, its text, and the reason it
    is skipped (the marker comment right before its fence), if any."""
    blocks = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        lang, start = m.group(1), i
        body = []
        i += 1
        while i < len(lines) and not lines[i].startswith("```"):
            body.append(lines[i])
            i += 1
        i += 1  # the closing fence
        if lang != "sh":
            continue
        before = next((l for l in reversed(lines[:start]) if l.strip()), "")
        skip = SKIP_MARKER.search(before)
        blocks.append(
            {"line": start + 1, "text": "\n".join(body), "skip": skip.group(1) if skip else None}
        )
    return blocks


def port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def pick_port() -> int:
    if port_free(DEFAULT_PORT):
        return DEFAULT_PORT
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def session_env(workdir: Path, port: int, binary: str) -> dict:
    """The environment of a new user's shell: theirs minus AWS settings, plus the venv's `aws`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "FLEETRUN_"))}
    env.update(
        FLEETRUN_BIN=binary,
        PATH=f"{Path(aws_cli()).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        AWS_CONFIG_FILE=str(workdir / "no-aws-config"),
        NO_COLOR="1",
    )
    if port != DEFAULT_PORT:
        env.update(
            FLEETRUN_LISTEN=f"127.0.0.1:{port}", FLEETRUN_ENDPOINT=f"http://127.0.0.1:{port}"
        )
    # On the PostgreSQL run, the README's unchanged server command finds its database here.
    store = store_args(workdir / "fleetrun-data")
    if store:
        env.update(FLEETRUN_STORE=store[1])
    return env


def with_port(text: str, port: int) -> str:
    return text.replace(f"127.0.0.1:{DEFAULT_PORT}", f"127.0.0.1:{port}")


def block_output(text: str, index: int) -> str:
    """The part of a captured stream written while walk-through block `index` ran."""
    parts = re.split(r"^::walk-through block (\d+)::$", text, flags=re.M)
    # parts = [before, "0", out0, "1", out1, ...]
    for n, out in zip(parts[1::2], parts[2::2]):
        if int(n) == index:
            return out
    return ""


class Walkthrough:
    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.readme = README.read_text("utf-8")
        self.blocks = sh_blocks(self.readme)
        self.run_blocks = [b for b in self.blocks if b["skip"] is None]
        self.port = pick_port()
        self.binary = fleetrun_binary()
        self.env = session_env(workdir, self.port, self.binary)
        self.server: Proc | None = None
        self.result: dict = {}

    def setup_command_1(self) -> str:
        """Line 1 of the README's setup block, without its comment."""
        setup = self.blocks[0]
        assert "setup" in (setup["skip"] or ""), setup
        line = setup["text"].splitlines()[0]
        return line.split("#", 1)[0].strip()

    def start_server(self) -> None:
        command = self.setup_command_1()
        assert command == "cargo run --release -- server --local-node", command
        logs = self.workdir / "logs"
        logs.mkdir()
        # `exec` all the way, so the server is the process: SIGTERM reaches it.
        script = f"{cargo_shim(exec_=True)}\n{command}\n"
        self.server = Proc(
            "readme-server", ["bash", "-c", script], logs, env=self.env, cwd=self.workdir
        )
        self.server.wait_for_line(r"this machine is managed node (mi-\w{17})\b", 60)
        key = self.server.wait_for_line(BANNER_EXPORT.pattern, 5)
        self.credentials = {
            "AWS_ACCESS_KEY_ID": key.group(1),
            "AWS_SECRET_ACCESS_KEY": key.group(2),
        }
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.ssm = make_client(self.endpoint, credentials=self.credentials)

    def script(self) -> str:
        parts = ["set -euo pipefail", cargo_shim(), f"cd {self.workdir}"]
        for i, b in enumerate(self.run_blocks):
            marker = f"::walk-through block {i}::"
            parts.append(f"echo '{marker}'; echo '{marker}' >&2")
            parts.append(f"# README.md line {b['line']}")
            parts.append(with_port(b["text"], self.port))
        # What the test checks afterwards: the variables the text set.
        names = "NODE NODE2 CMD LONG ROLL TICK STOPPED ACT_ID AUDITOR_KEY"
        parts.append(
            f"for v in {names}; do printf '%s=%s\\n' \"$v\" \"${{!v-}}\"; done > {self.workdir}/vars"
        )
        parts.append("echo '::walk-through done::'")
        return "\n".join(parts) + "\n"

    def run(self) -> None:
        script = self.script()
        (self.workdir / "walkthrough.sh").write_text(script)
        out_path, err_path = self.workdir / "stdout", self.workdir / "stderr"
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            # Its own session, so the agent the text starts in the background goes with it.
            session = subprocess.Popen(
                ["bash", str(self.workdir / "walkthrough.sh")],
                stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                env=self.env, cwd=self.workdir, start_new_session=True,
            )
            try:
                code = session.wait(SESSION_TIMEOUT)
            except subprocess.TimeoutExpired:
                code = None
        self.result = {
            "code": code,
            "stdout": out_path.read_text("utf-8", "replace"),
            "stderr": err_path.read_text("utf-8", "replace"),
        }
        self.session_pgid = session.pid

    def vars(self) -> dict:
        path = self.workdir / "vars"
        if not path.exists():
            return {}
        return dict(l.split("=", 1) for l in path.read_text().splitlines() if "=" in l)

    def output_of(self, needle: str) -> str:
        """stdout + stderr of the (first) block whose text contains `needle`."""
        for i, b in enumerate(self.run_blocks):
            if needle in b["text"]:
                return block_output(self.result["stdout"], i) + block_output(
                    self.result["stderr"], i
                )
        raise AssertionError(f"no walk-through block contains {needle!r}")

    def report(self) -> str:
        tail = lambda s: "\n".join(s.splitlines()[-60:])  # noqa: E731
        server = self.server.stderr_tail(40) if self.server else ""
        return (
            f"exit code {self.result.get('code')} (None: killed after {SESSION_TIMEOUT}s); "
            f"script {self.workdir / 'walkthrough.sh'}\n--- stdout tail ---\n"
            f"{tail(self.result.get('stdout', ''))}\n--- stderr tail ---\n"
            f"{tail(self.result.get('stderr', ''))}\n--- server stderr tail ---\n{server}"
        )

    def stop(self) -> None:
        if getattr(self, "session_pgid", None):
            try:
                os.killpg(self.session_pgid, signal.SIGTERM)
                time.sleep(0.5)
                os.killpg(self.session_pgid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self.server:
            self.server.stop()


@pytest.fixture(scope="module")
def walkthrough(request):
    workdir = Path(tempfile.mkdtemp(prefix="fleetrun-readme-"))
    failed_before = request.session.testsfailed
    w = Walkthrough(workdir)
    try:
        w.start_server()
        w.run()
        yield w
    finally:
        w.stop()
    if request.session.testsfailed == failed_before:
        shutil.rmtree(workdir, ignore_errors=True)
    else:
        sys.stderr.write(f"\nwalk-through session kept in {workdir}\n")


def test_the_readme_marks_few_blocks_as_not_run_and_says_why():
    blocks = sh_blocks(README.read_text("utf-8"))
    skipped = [b for b in blocks if b["skip"]]
    assert len(skipped) <= MAX_SKIPPED, [(b["line"], b["skip"]) for b in skipped]
    assert all(len(b["skip"]) > 20 for b in skipped), skipped
    assert len(blocks) - len(skipped) >= 8, "the walk-through lost its blocks?"
    # The first screen: exactly the two setup commands.
    setup = [l for l in blocks[0]["text"].splitlines() if l.strip()]
    assert [l.split("#")[0].strip() for l in setup] == [
        "cargo run --release -- server --local-node",
        "./scripts/test.sh",
    ]


def test_the_commands_have_no_placeholders():
    for b in sh_blocks(README.read_text("utf-8")):
        if b["skip"]:
            continue
        commands = [l for l in b["text"].splitlines() if not l.lstrip().startswith("#")]
        for line in commands:
            code = line.split(" #", 1)[0]
            assert not re.search(r"<[A-Za-z][\w-]*>|AKIA…|mi-…", code), (b["line"], line)


def test_every_block_runs_to_the_end(walkthrough):
    assert walkthrough.result["code"] == 0, walkthrough.report()
    assert "::walk-through done::" in walkthrough.result["stdout"], walkthrough.report()


def test_two_distinct_nodes_were_selected(walkthrough):
    v = walkthrough.vars()
    assert re.fullmatch(r"mi-[0-9a-f]{17}", v.get("NODE", "")), v
    assert re.fullmatch(r"mi-[0-9a-f]{17}", v.get("NODE2", "")), v
    assert v["NODE"] != v["NODE2"]
    (info,) = walkthrough.ssm.describe_instance_information(
        Filters=[{"Key": "InstanceIds", "Values": [v["NODE2"]]}]
    )["InstanceInformationList"]
    assert info["ActivationId"] == v["ACT_ID"]


def commands(walkthrough) -> list[dict]:
    out, token = [], None
    while True:
        page = walkthrough.ssm.list_commands(**({"NextToken": token} if token else {}))
        out += page["Commands"]
        token = page.get("NextToken")
        if not token:
            return out


def command_with(walkthrough, predicate, what: str) -> dict:
    found = [c for c in commands(walkthrough) if predicate(c)]
    assert len(found) == 1, f"{what}: {found}"
    return found[0]


def settled(walkthrough, command_id: str, timeout: float = 60.0) -> dict:
    def done():
        (c,) = walkthrough.ssm.list_commands(CommandId=command_id)["Commands"]
        return c if c["Status"] not in ("Pending", "InProgress", "Cancelling") else None

    return poll(f"command {command_id} to end", done, timeout, interval=0.5)


def test_the_first_command_succeeds_on_both_nodes(walkthrough):
    v = walkthrough.vars()
    first = command_with(walkthrough, lambda c: c["Comment"] == "who am I", "the first command")
    assert sorted(first["InstanceIds"]) == sorted([v["NODE"], v["NODE2"]])
    first = settled(walkthrough, first["CommandId"])
    assert (first["Status"], first["CompletedCount"], first["ErrorCount"]) == ("Success", 2, 0)
    for node in (v["NODE"], v["NODE2"]):
        inv = walkthrough.ssm.get_command_invocation(CommandId=first["CommandId"], InstanceId=node)
        assert inv["Status"] == "Success"
        assert f"\n{node}\n" in inv["StandardOutputContent"], inv["StandardOutputContent"]


def by_params(*commands_text):
    return lambda c: c["DocumentName"] == "AWS-RunShellScript" and c["Parameters"].get(
        "commands"
    ) == list(commands_text)


def test_the_ticking_command_is_followed_by_tail_and_read_back_as_log_events(walkthrough):
    v = walkthrough.vars()
    out = walkthrough.result["stdout"]
    assert "tick 1\ntick 2\ntick 3\n" in out, out
    stream = f"{v['TICK']}/{v['NODE']}/aws-runShellScript/stdout"
    # filter-log-events --output text: one "stream<TAB>message" line per event.
    for i in (1, 2, 3):
        assert f"{stream}\ttick {i}\n" in out, out
    assert settled(walkthrough, v["TICK"])["Status"] == "Success"


def test_the_tag_examples_target_what_they_say(walkthrough):
    def targeted(values: list[str], more: bool = False):
        def match(c):
            t = c.get("Targets") or []
            return (
                bool(t) and t[0]["Values"] == values and (len(t) > 1) == more
                and c["Parameters"]["commands"] == ["hostname"]
            )

        return match

    web = settled(walkthrough, command_with(walkthrough, targeted(["web"]), "tag:role=web")["CommandId"])
    assert (web["TargetCount"], web["Status"]) == (1, "Success")
    both = command_with(walkthrough, targeted(["web", "db"], more=True), "role web,db + team")
    assert both["TargetCount"] == 1
    nope = command_with(walkthrough, targeted(["nope"]), "tag:role=nope")
    assert (nope["Status"], nope["StatusDetails"], nope["TargetCount"]) == (
        "Success", "NoInstancesInTag", 0,
    )


def test_the_resource_group_example_follows_the_group(walkthrough):
    v = walkthrough.vars()
    grouped = sorted(
        (c for c in commands(walkthrough)
         if (c.get("Targets") or [{}])[0].get("Key") == "resource-groups:Name"),
        key=lambda c: c["RequestedDateTime"],
    )
    assert [c["Targets"] for c in grouped] == [[{"Key": "resource-groups:Name", "Values": ["web-tier"]}]] * 2
    assert [c["TargetCount"] for c in grouped] == [2, 1]
    last = settled(walkthrough, grouped[1]["CommandId"])
    invs = walkthrough.ssm.list_command_invocations(CommandId=last["CommandId"])["CommandInvocations"]
    assert [i["InstanceId"] for i in invs] == [v["NODE"]]


def test_failure_timeout_and_cancel_end_as_promised(walkthrough):
    v = walkthrough.vars()
    failed = command_with(walkthrough, by_params("echo bad >&2", "exit 3"), "exit 3")
    failed = settled(walkthrough, failed["CommandId"])
    assert failed["Status"] == "Failed"
    inv = walkthrough.ssm.get_command_invocation(CommandId=failed["CommandId"], InstanceId=v["NODE"])
    assert (inv["Status"], inv["ResponseCode"], inv["StandardErrorContent"]) == ("Failed", 3, "bad\nfailed to run commands: exit status 3")

    timed = command_with(
        walkthrough,
        lambda c: by_params("sleep 600")(c) and c["Parameters"].get("executionTimeout") == ["10"],
        "executionTimeout 10",
    )
    timed = settled(walkthrough, timed["CommandId"], timeout=90)
    assert timed["Status"] == "TimedOut", timed
    inv = walkthrough.ssm.get_command_invocation(CommandId=timed["CommandId"], InstanceId=v["NODE"])
    assert (inv["StatusDetails"], inv["ResponseCode"]) == ("ExecutionTimedOut", 137)

    cancelled = settled(walkthrough, v["LONG"])
    assert cancelled["Status"] == "Cancelled", cancelled


def test_the_rollout_stops_at_the_first_error(walkthrough):
    v = walkthrough.vars()
    roll = settled(walkthrough, v["ROLL"])
    assert (roll["Status"], roll["TargetCount"]) == ("Failed", 2), roll
    details = sorted(
        i["StatusDetails"]
        for i in walkthrough.ssm.list_command_invocations(CommandId=v["ROLL"])["CommandInvocations"]
    )
    assert details == ["Failed", "Terminated"]


def test_the_alarm_stops_the_rollout_and_alertmanager_resolves_it(walkthrough):
    v = walkthrough.vars()
    stopped = settled(walkthrough, v["STOPPED"])
    assert stopped["Status"] == "Cancelled", stopped
    assert stopped["TriggeredAlarms"] == [{"Name": "web-errors", "State": "ALARM"}], stopped
    statuses = {
        i["Status"]
        for i in walkthrough.ssm.list_command_invocations(CommandId=v["STOPPED"])["CommandInvocations"]
    }
    assert statuses == {"Cancelled"}, statuses
    out = walkthrough.output_of("alertmanager-token")
    assert '"OK"' in out and "Alertmanager: resolved" in out, out


def test_the_document_gets_a_second_version_that_becomes_latest_and_default(walkthrough):
    v = walkthrough.vars()
    doc = walkthrough.ssm.describe_document(Name="Hello")["Document"]
    assert (doc["LatestVersion"], doc["DefaultVersion"]) == ("2", "2"), doc
    # $CMD was last set by the Documents block: the Hello run with count=3.
    hello = settled(walkthrough, v["CMD"])
    assert (hello["DocumentName"], hello["Status"]) == ("Hello", "Success")
    count = walkthrough.ssm.get_command_invocation(
        CommandId=v["CMD"], InstanceId=v["NODE"], PluginName="count"
    )
    assert count["StandardOutputContent"] == "1\n2\n3\n"
    # Version 2 allows the new greeting.
    hey = command_with(
        walkthrough,
        lambda c: c["DocumentName"] == "Hello" and c["Parameters"].get("greeting") == ["hey"],
        "greeting=hey",
    )
    assert settled(walkthrough, hey["CommandId"])["Status"] == "Success"


def test_unsupported_platform_shows_what_fleetrun_answers(walkthrough):
    v = walkthrough.vars()
    out = walkthrough.output_of("PowerShellOnly")
    assert "(UnsupportedPlatformType)" in out, out
    platform = walkthrough.ssm.describe_instance_information(
        Filters=[{"Key": "InstanceIds", "Values": [v["NODE"]]}]
    )["InstanceInformationList"][0]["PlatformType"]
    assert f"instance id {v['NODE']} of platform type {platform}" in out, out


def test_the_auditor_key_may_list_but_not_send(walkthrough):
    v = walkthrough.vars()
    out = walkthrough.output_of("AUDITOR_KEY AUDITOR_SECRET")
    assert "(AccessDeniedException) when calling the SendCommand operation" in out, out
    assert "user/auditor is not authorized to perform: ssm:SendCommand" in out, out
    assert re.fullmatch(r"AKIA[A-Z0-9]{16}", v.get("AUDITOR_KEY", "")), v
    # The block's last line disabled it.
    listed = subprocess.run(
        [walkthrough.binary, "admin", "--endpoint", walkthrough.endpoint, "list-keys",
         "--output", "text"],
        cwd=walkthrough.workdir, env=walkthrough.env, capture_output=True, text=True, timeout=30,
    )
    assert listed.returncode == 0, listed.stderr
    keys = {line.split("\t")[0]: line.split("\t")[1:] for line in listed.stdout.splitlines()}
    assert keys[v["AUDITOR_KEY"]] == ["auditor", "Inactive"], keys
