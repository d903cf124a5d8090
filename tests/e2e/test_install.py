"""A node you can install: the systemd unit, packaging/install-agent.sh, shell completions.

systemd is not PID 1 where this suite runs, so nothing here starts a unit through systemctl. What
is tested for real instead:
- `systemd-analyze verify` on the unit (the repository's file, and the one the installer put in
  place), with its binary path pointing at the real `fleetrun-agent`;
- the installer run into a temporary root (`--root`): the files it writes and their modes, the
  node registered by the installed binary against the session's server with the code on standard
  input, the unit enabled (`systemctl --root` works offline), upgrade, uninstall, `--purge`;
- the installed unit's service line run the way systemd would run it (its Environment=, its
  EnvironmentFile, its ExecStart, its ConditionPathExists; paths under the temporary root): the
  node comes Online, runs a command, logs without colour even to a terminal, stops cleanly;
- `fleetrun completions bash|zsh|fish` (and `--agent`): bash parses the script and its completion
  function completes subcommands and flags; zsh and fish (not installed here) by content.

The agent binary is `fleetrun-agent` (FLEETRUN_AGENT_BIN, default <target>/debug/fleetrun-agent,
built by scripts/e2e.sh when missing).
"""

from __future__ import annotations

import json
import os
import pty
import shlex
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

import pytest

from conftest import ANSI_ESCAPE, REPO_ROOT, Proc, fleetrun_binary, poll

INSTALLER = REPO_ROOT / "packaging" / "install-agent.sh"
UNIT_FILE = REPO_ROOT / "packaging" / "systemd" / "fleetrun-agent.service"
UNIT = "fleetrun-agent.service"
BIN_NAME = "fleetrun-agent"
BIN_PATH = "/usr/local/bin/fleetrun-agent"
# Where systemd looks for an ExecStart command without a directory (the part of its fixed search
# path a package or the installer uses).
EXEC_SEARCH = ("/usr/local/bin", "/usr/bin")
UNIT_PATH = f"/etc/systemd/system/{UNIT}"
ENV_PATH = "/etc/fleetrun/agent.env"
STATE_DIR = "/var/lib/fleetrun"


def agent_binary() -> str:
    path = os.environ.get("FLEETRUN_AGENT_BIN")
    if not path:
        target = os.environ.get("CARGO_TARGET_DIR", "target")
        path = str(REPO_ROOT / target / "debug" / "fleetrun-agent")
    if not os.access(path, os.X_OK):
        pytest.fail(
            f"fleetrun-agent binary not found at {path}: build it (cargo build -p fleetrun-agent "
            "--bin fleetrun-agent) or set FLEETRUN_AGENT_BIN; scripts/e2e.sh does it"
        )
    return path


def systemd_analyze() -> str:
    found = shutil.which("systemd-analyze")
    if not found:
        pytest.fail("systemd-analyze is missing (Debian: apt-get install systemd; scripts/e2e.sh does it)")
    return found


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def unit_settings(text: str) -> dict[str, list[str]]:
    """Key → values of a unit file (every section; repeated keys keep every value)."""
    settings: dict[str, list[str]] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";", "[")):
            continue
        key, _, value = line.partition("=")
        settings.setdefault(key.strip(), []).append(value.strip())
    return settings


def verify(unit_text: str, binary: str, workdir: Path) -> list[str]:
    """`systemd-analyze verify` on the unit with its ExecStart command replaced by `binary` (verify
    checks that it is executable, and here it is not installed); returns what it said about the
    unit (it exits 0 on warnings)."""
    unit = workdir / UNIT
    assert f"\nExecStart={BIN_NAME} " in unit_text
    unit.write_text(unit_text.replace(f"\nExecStart={BIN_NAME} ", f"\nExecStart={binary} "))
    done = subprocess.run(
        [systemd_analyze(), "verify", str(unit)], capture_output=True, text=True, timeout=60,
        cwd=workdir,
    )
    said = [line for line in (done.stdout + done.stderr).splitlines() if "fleetrun" in line]
    assert done.returncode == 0, f"systemd-analyze verify exited {done.returncode}: {said}"
    return said


def installer(
    *args: str, stdin: str | None = None, env: dict | None = None, installer_path: Path = INSTALLER
) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(installer_path), *args], input=stdin, capture_output=True, text=True,
        timeout=120, env=env,
    )


# ------------------------------------------------------------------------------------ the unit


def test_the_unit_passes_systemd_analyze_verify(tmp_path):
    assert verify(UNIT_FILE.read_text(), agent_binary(), tmp_path) == []
    # The check can fail: a misspelt setting is reported.
    said = verify(UNIT_FILE.read_text().replace("KillMode=", "KilMode="), agent_binary(), tmp_path)
    assert any("KilMode" in line for line in said), said


def test_the_unit_keeps_scripts_and_stops_restarting_when_it_cannot_help():
    s = unit_settings(UNIT_FILE.read_text())
    # Stopping the agent must not kill the scripts it runs (they are picked up by the next start).
    assert s["KillMode"] == ["process"]
    assert s["Restart"] == ["on-failure"]
    # 3 and 4 are what `fleetrun-agent --help` calls a refused registration and a deregistered node.
    assert s["RestartPreventExitStatus"] == ["3 4"]
    help_text = subprocess.run(
        [agent_binary(), "--help"], capture_output=True, text=True, timeout=30, check=True
    ).stdout
    assert "\n  3    registration refused" in help_text
    assert "\n  4    this node was deregistered" in help_text
    # One state dir everywhere: systemd's, the agent's, and the start condition's.
    assert s["StateDirectory"] == ["fleetrun"] and s["StateDirectoryMode"] == ["0700"]
    argv = shlex.split(s["ExecStart"][0])
    # No directory: systemd finds the installer's /usr/local/bin and a package's /usr/bin.
    assert argv[0] == BIN_NAME and argv[argv.index("--state-dir") + 1] == STATE_DIR
    assert s["ConditionPathExists"] == [f"{STATE_DIR}/identity.json"]
    assert s["EnvironmentFile"] == [ENV_PATH]
    assert s["WantedBy"] == ["multi-user.target"]


# ------------------------------------------------------------------------- install, uninstall


def run_like_systemd(
    root: Path, logs: Path, name: str, stderr_tty: bool = False, drop: str | None = None,
    unit_path: str = UNIT_PATH,
) -> Proc | None:
    """Starts the installed unit's ExecStart as systemd would (its Environment= and EnvironmentFile,
    nothing inherited but PATH), every absolute path of it under `root`; None when the unit's
    ConditionPathExists would skip the start. `drop`: a variable of the unit's to leave out."""
    s = unit_settings((root / unit_path.lstrip("/")).read_text())

    def rooted(value: str) -> str:
        under = value.startswith(("/usr/", "/etc/fleetrun", "/var/lib/fleetrun"))
        return str(root) + value if under else value

    if not Path(rooted(s["ConditionPathExists"][0])).exists():
        return None
    env = {"PATH": os.environ["PATH"]}
    for assignment in s.get("Environment", []):
        for pair in shlex.split(assignment):
            k, _, v = pair.partition("=")
            env[k] = v
    for file in s["EnvironmentFile"]:
        for line in Path(rooted(file.lstrip("-"))).read_text().splitlines():
            if line and not line.startswith("#"):
                k, _, v = line.partition("=")
                env[k] = rooted(v)
    env.pop(drop or "", None)
    argv = [rooted(a) for a in shlex.split(s["ExecStart"][0])]
    if "/" not in argv[0]:
        found = [root / d.lstrip("/") / argv[0] for d in EXEC_SEARCH]
        argv[0] = str(next(p for p in found if os.access(p, os.X_OK)))
    if not stderr_tty:
        return Proc(name, argv, logs, env=env)
    # stderr a terminal: only NO_COLOR from the unit keeps colour out of the log.
    controller, terminal = pty.openpty()
    proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=terminal)
    os.close(terminal)
    proc.controller = controller  # type: ignore[attr-defined]
    return proc  # type: ignore[return-value]


def files_under(root: Path) -> dict[str, int]:
    return {
        "/" + str(p.relative_to(root)): mode(p)
        for p in root.rglob("*")
        if not p.is_dir() or p.is_symlink()
    }


def test_install_register_run_upgrade_uninstall(fleet, tmp_path):
    root = tmp_path / "root"
    act = fleet.ssm.create_activation(IamRole="fleetrun-e2e", RegistrationLimit=1)
    code = act["ActivationCode"]
    done = installer(
        "install", "--root", str(root), "--binary", agent_binary(), "--unit", str(UNIT_FILE),
        "--server", fleet.endpoint, "--activation-id", act["ActivationId"],
        "--activation-code-file", "-", stdin=code + "\n",
    )
    assert done.returncode == 0, done.stderr
    assert code not in done.stderr + done.stdout

    assert mode(root / BIN_PATH.lstrip("/")) == 0o755
    assert (root / BIN_PATH.lstrip("/")).read_bytes() == Path(agent_binary()).read_bytes()
    assert (root / UNIT_PATH.lstrip("/")).read_text() == UNIT_FILE.read_text()
    assert mode(root / UNIT_PATH.lstrip("/")) == 0o644
    assert mode(root / "etc/fleetrun") == 0o700
    env_file = root / ENV_PATH.lstrip("/")
    assert mode(env_file) == 0o600
    assert f"FLEETRUN_SERVER={fleet.endpoint}\n" in env_file.read_text()
    assert mode(root / STATE_DIR.lstrip("/")) == 0o700
    identity = root / STATE_DIR.lstrip("/") / "identity.json"
    assert mode(identity) == 0o600
    node = json.loads(identity.read_text())["instanceId"]
    # Enabled the way `systemctl enable` does it, by the [Install] section.
    wants = root / "etc/systemd/system/multi-user.target.wants" / UNIT
    assert os.readlink(wants) == UNIT_PATH
    # The code is in no file the installer wrote.
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink() and path.stat().st_size < 1_000_000:
            assert code.encode() not in path.read_bytes(), path
    # The installed unit, as installed, passes verify too.
    assert verify((root / UNIT_PATH.lstrip("/")).read_text(), agent_binary(), tmp_path) == []

    # Started as systemd would start it: Online, runs a command, stops cleanly on SIGTERM.
    agent = run_like_systemd(root, fleet.logs, "installed-agent")
    assert agent is not None
    try:
        def online():
            if not agent.running():
                raise AssertionError(f"the installed agent exited:\n{agent.stderr_tail()}")
            info = fleet.ssm.describe_instance_information(
                Filters=[{"Key": "InstanceIds", "Values": [node]}]
            )["InstanceInformationList"]
            # A poll after registering: the agent process itself is up.
            return (info and info[0]["PingStatus"] == "Online"
                    and info[0]["LastPingDateTime"] > info[0]["RegistrationDate"])

        poll("the installed agent to be Online", online, 30, interval=0.2)
        command_id = fleet.run(node, ["echo installed as $USER"])
        result = fleet.wait_invocation(command_id, node)
        assert result["Status"] == "Success", result
        assert result["StandardOutputContent"] == "installed as root\n"
    finally:
        assert agent.stop() == 0, agent.stderr_tail()
    log = agent.log_path.read_text()
    assert "agent started" in log and not ANSI_ESCAPE.search(log)
    assert code not in log

    # Upgrade: install again with nothing but a new binary; config and identity stay.
    new_binary = tmp_path / "fleetrun-agent"
    new_binary.write_bytes(Path(agent_binary()).read_bytes() + b"\0a newer build")
    new_binary.chmod(0o755)
    done = installer("install", "--root", str(root), "--binary", str(new_binary), "--unit", str(UNIT_FILE))
    assert done.returncode == 0, done.stderr
    assert (root / BIN_PATH.lstrip("/")).read_bytes() == new_binary.read_bytes()
    assert os.readlink(wants) == UNIT_PATH
    assert f"FLEETRUN_SERVER={fleet.endpoint}\n" in env_file.read_text()
    assert json.loads(identity.read_text())["instanceId"] == node

    # Uninstall keeps the node's identity and config; installing again resumes as the same node.
    done = installer("uninstall", "--root", str(root))
    assert done.returncode == 0, done.stderr
    assert not (root / BIN_PATH.lstrip("/")).exists()
    assert not (root / UNIT_PATH.lstrip("/")).exists()
    assert not wants.exists() and not wants.is_symlink()
    assert identity.exists() and env_file.exists()
    assert node in done.stderr

    # --purge removes everything, and says how to remove the node on the server.
    done = installer("uninstall", "--purge", "--root", str(root))
    assert done.returncode == 0, done.stderr
    assert files_under(root) == {}, files_under(root)
    assert f"aws ssm deregister-managed-instance --instance-id {node}" in done.stderr


def test_no_colour_in_the_log_even_on_a_terminal(fleet, tmp_path):
    """The unit's NO_COLOR keeps the log plain wherever stderr goes (the journal is no terminal,
    but a StandardError=tty override would be)."""
    root = tmp_path / "root"
    act = fleet.ssm.create_activation(IamRole="fleetrun-e2e", RegistrationLimit=1)
    done = installer(
        "install", "--root", str(root), "--binary", agent_binary(), "--unit", str(UNIT_FILE),
        "--server", fleet.endpoint, "--activation-id", act["ActivationId"], "--no-start",
        env=dict(os.environ, FLEETRUN_ACTIVATION_CODE=act["ActivationCode"]),
    )
    assert done.returncode == 0, done.stderr
    assert not (root / "etc/systemd/system/multi-user.target.wants" / UNIT).exists()

    def start_line(drop: str | None) -> str:
        proc = run_like_systemd(root, fleet.logs, "installed-agent-tty", stderr_tty=True, drop=drop)
        assert proc is not None
        out = b""
        try:
            def started():
                nonlocal out
                try:
                    out += os.read(proc.controller, 65536)
                except OSError:
                    pass
                return b"agent started" in ANSI_ESCAPE.sub("", out.decode("utf-8", "replace")).encode()

            poll("the agent's start line on its terminal", started, 30)
        finally:
            proc.terminate()
            assert proc.wait(30) == 0
            os.close(proc.controller)
        return out.decode("utf-8", "replace")

    assert not ANSI_ESCAPE.search(start_line(None))
    # The control: without the unit's NO_COLOR the same agent colours its terminal.
    assert ANSI_ESCAPE.search(start_line("NO_COLOR"))
    fleet.ssm.deregister_managed_instance(
        InstanceId=json.loads((root / STATE_DIR.lstrip("/") / "identity.json").read_text())["instanceId"]
    )


def test_install_refusals_and_trust_settings(fleet, tmp_path):
    root = tmp_path / "root"
    base = ["install", "--root", str(root), "--binary", agent_binary(), "--unit", str(UNIT_FILE)]

    # Never a code on the command line.
    done = installer(*base, "--server", fleet.endpoint, "--activation-id", "x", "--activation-code", "secret")
    assert done.returncode == 2 and "must not sit on a command line" in done.stderr
    assert not root.exists()
    # The first install needs a server; a root is absolute.
    done = installer(*base)
    assert done.returncode == 2 and "--server is required" in done.stderr
    done = installer("install", "--root", "relative/dir", "--server", fleet.endpoint)
    assert done.returncode == 2 and "absolute" in done.stderr

    # A refused activation: the agent's exit code (3), no identity, the service not enabled.
    act = fleet.ssm.create_activation(IamRole="fleetrun-e2e", RegistrationLimit=1)
    done = installer(*base, "--server", fleet.endpoint, "--activation-id", act["ActivationId"],
                     "--activation-code-file", "-", stdin="not-the-code\n")
    assert done.returncode == 3, done.stderr
    assert "registration failed" in done.stderr
    assert not (root / STATE_DIR.lstrip("/") / "identity.json").exists()
    assert not (root / "etc/systemd/system/multi-user.target.wants" / UNIT).exists()
    # Unregistered, the unit's condition would skip the start.
    assert run_like_systemd(root, fleet.logs, "never-started") is None

    # TLS trust: the CA certificate is copied beside the config, readable; the env file names it.
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\nnot checked here\n-----END CERTIFICATE-----\n")
    fingerprint = ":".join(["AB"] * 32)
    done = installer(*base, "--server", "https://fleetrun.example:8089", "--ca-cert", str(ca),
                     "--server-fingerprint", fingerprint, "--no-start")
    assert done.returncode == 0, done.stderr
    assert (root / "etc/fleetrun/ca.pem").read_text() == ca.read_text()
    assert mode(root / "etc/fleetrun/ca.pem") == 0o644
    env_lines = (root / ENV_PATH.lstrip("/")).read_text().splitlines()
    assert "FLEETRUN_SERVER=https://fleetrun.example:8089" in env_lines
    assert "FLEETRUN_CA_CERT=/etc/fleetrun/ca.pem" in env_lines
    assert f"FLEETRUN_SERVER_FINGERPRINT={fingerprint}" in env_lines
    # A value that would change meaning in an EnvironmentFile is refused.
    done = installer(*base, "--server", "https://a b", "--no-start")
    assert done.returncode == 2 and "spaces" in done.stderr


# ------------------------------------------------------------------------------------ the .deb


def cargo_deb() -> str:
    found = os.environ.get("FLEETRUN_CARGO_DEB") or shutil.which("cargo-deb")
    if not found:
        pytest.fail("cargo-deb is missing (cargo install --locked cargo-deb; scripts/e2e.sh does it)")
    return found


def test_the_deb_installs_the_agent_the_unit_and_the_installer(fleet, tmp_path):
    """`cargo deb` on the debug build (--no-build: the release profiles' LTO takes minutes), its
    contents and maintainer scripts, then its files unpacked into a root where the shipped
    installer registers the node and the unit's service line runs: the package's layout works."""
    binary = Path(agent_binary())
    # cargo-deb finds the binary as <target>/<profile dir>/fleetrun-agent.
    env = dict(os.environ, CARGO_TARGET_DIR=str(binary.parent.parent))
    done = subprocess.run(
        [cargo_deb(), "deb", "-p", "fleetrun-agent", "--no-build", "--profile", "dev", "-o", str(tmp_path)],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr
    (deb,) = tmp_path.glob("fleetrun-agent_*.deb")

    def dpkg_deb(*args: str) -> str:
        return subprocess.run(
            ["dpkg-deb", *args], capture_output=True, text=True, check=True, timeout=120
        ).stdout

    control = dpkg_deb("--field", str(deb))
    assert "Package: fleetrun-agent\n" in control and "Section: admin\n" in control
    contents = {}
    for line in dpkg_deb("--contents", str(deb)).splitlines():
        perms, *_, path = line.split()
        contents[path.lstrip(".")] = perms
    assert contents["/usr/bin/fleetrun-agent"] == "-rwxr-xr-x"
    assert contents["/usr/lib/systemd/system/fleetrun-agent.service"] == "-rw-r--r--"
    assert contents["/usr/share/fleetrun-agent/install-agent.sh"] == "-rwxr-xr-x"
    assert not any(p.startswith(("/usr/local", "/etc", "/var")) for p in contents), contents

    scripts = tmp_path / "control"
    subprocess.run(["dpkg-deb", "--control", str(deb), str(scripts)], check=True, timeout=60)
    for name in ("postinst", "prerm", "postrm"):
        subprocess.run(["sh", "-n", str(scripts / name)], check=True, timeout=30)
    postinst = (scripts / "postinst").read_text()
    # Enabled, and started, which on a new node is nothing: the unit waits for the identity.
    assert "deb-systemd-helper enable fleetrun-agent.service" in postinst
    assert "deb-systemd-invoke $_dh_action fleetrun-agent.service" in postinst
    assert "install-agent.sh register" in postinst
    assert "deb-systemd-invoke stop fleetrun-agent.service" in (scripts / "prerm").read_text()
    assert "rm -rf /var/lib/fleetrun /etc/fleetrun" in (scripts / "postrm").read_text()

    root = tmp_path / "root"
    dpkg_deb("--extract", str(deb), str(root))
    deb_unit = "/usr/lib/systemd/system/fleetrun-agent.service"
    assert (root / deb_unit.lstrip("/")).read_text() == UNIT_FILE.read_text()
    act = fleet.ssm.create_activation(IamRole="fleetrun-e2e", RegistrationLimit=1)
    done = installer(
        "register", "--root", str(root), "--server", fleet.endpoint,
        "--activation-id", act["ActivationId"], "--activation-code-file", "-",
        stdin=act["ActivationCode"], installer_path=root / "usr/share/fleetrun-agent/install-agent.sh",
    )
    assert done.returncode == 0, done.stderr
    assert not (root / "usr/local").exists()
    node = json.loads((root / STATE_DIR.lstrip("/") / "identity.json").read_text())["instanceId"]
    agent = run_like_systemd(root, fleet.logs, "deb-agent", unit_path=deb_unit)
    assert agent is not None
    try:
        command_id = fleet.run(node, ["echo from the package"])
        result = fleet.wait_invocation(command_id, node)
        assert result["StandardOutputContent"] == "from the package\n", result
    finally:
        assert agent.stop() == 0, agent.stderr_tail()
    # The package's files are the package manager's to remove.
    done = installer("uninstall", "--root", str(root))
    assert done.returncode == 2 and "apt remove fleetrun-agent" in done.stderr
    assert (root / "usr/bin/fleetrun-agent").exists()


# ----------------------------------------------------------------------------- completions


def completions(*args: str) -> str:
    done = subprocess.run(
        [fleetrun_binary(), "completions", *args], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def bash_complete(script: str, function: str, words: list[str]) -> list[str]:
    """What the completion function offers for the last of `words` (bash's own calling convention:
    COMP_WORDS, COMP_CWORD, and arguments command, current word, previous word)."""
    with tempfile.NamedTemporaryFile("w", suffix=".bash", delete=False) as f:
        f.write(script)
    try:
        program = (
            f"source {shlex.quote(f.name)}\n"
            f"COMP_WORDS=({' '.join(shlex.quote(w) for w in words)})\n"
            f"COMP_CWORD={len(words) - 1}\n"
            f"{function} {shlex.quote(words[0])} {shlex.quote(words[-1])} {shlex.quote(words[-2])}\n"
            'printf "%s\\n" "${COMPREPLY[@]}"\n'
        )
        done = subprocess.run(["bash", "-c", program], capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, done.stderr
        return done.stdout.split()
    finally:
        os.unlink(f.name)


def test_bash_completions_complete_subcommands_and_flags(tmp_path):
    script = completions("bash")
    (tmp_path / "fleetrun.bash").write_text(script)
    subprocess.run(["bash", "-n", str(tmp_path / "fleetrun.bash")], check=True, timeout=30)
    assert "complete -F _fleetrun" in script
    top = bash_complete(script, "_fleetrun", ["fleetrun", ""])
    assert {"server", "agent", "admin", "tail", "completions"} <= set(top), top
    assert bash_complete(script, "_fleetrun", ["fleetrun", "agent", "reg"]) == ["register"]
    assert "--listen" in bash_complete(script, "_fleetrun", ["fleetrun", "server", "--li"])
    assert {"bash", "zsh", "fish"} <= set(bash_complete(script, "_fleetrun", ["fleetrun", "completions", ""]))

    agent = completions("bash", "--agent")
    (tmp_path / "fleetrun-agent.bash").write_text(agent)
    subprocess.run(["bash", "-n", str(tmp_path / "fleetrun-agent.bash")], check=True, timeout=30)
    assert "complete -F _fleetrun__agent" in agent and agent.rstrip().endswith("fi")
    assert {"register", "run"} <= set(bash_complete(agent, "_fleetrun__agent", ["fleetrun-agent", ""]))
    assert bash_complete(agent, "_fleetrun__agent", ["fleetrun-agent", "run", "--ser"]) == [
        "--server", "--server-fingerprint"]
    words = ["fleetrun-agent", "register", "--activation-code-f"]
    assert bash_complete(agent, "_fleetrun__agent", words) == ["--activation-code-file"]


def test_zsh_and_fish_completions_name_the_subcommands():
    zsh = completions("zsh")
    assert zsh.startswith("#compdef fleetrun\n")
    fish = completions("fish")
    assert "complete -c fleetrun" in fish
    for sub in ("server", "agent", "admin", "tail", "completions"):
        assert f"'{sub}:" in zsh, sub
        assert f'-a "{sub}"' in fish, sub
    assert "--state-dir" in zsh and "state-dir" in fish
    for shell, checker in (("zsh", ["zsh", "-n"]), ("fish", ["fish", "--no-execute"])):
        # Parsed too where the shell is installed (it is not on the CI image).
        if shutil.which(checker[0]):
            subprocess.run(
                [*checker, "/dev/stdin"], input=completions(shell), text=True, check=True, timeout=30
            )
    assert completions("zsh", "--agent").startswith("#compdef fleetrun-agent\n")
    assert "complete -c fleetrun-agent" in completions("fish", "--agent")
