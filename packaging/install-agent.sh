#!/usr/bin/env bash
# Installs the fleetrun agent on a node as a systemd service, or removes it.
#
#   install-agent.sh install [--server URL] [--ca-cert FILE | --server-fingerprint SHA256]
#                            [--activation-id ID [--activation-code-file FILE|-]]
#                            [--binary PATH] [--unit PATH] [--root DIR] [--no-start]
#   install-agent.sh register  (the same, without --binary and --unit)
#   install-agent.sh uninstall [--purge] [--root DIR]
#
# install: copies the binary to /usr/local/bin/fleetrun-agent (0755) and the unit to
#   /etc/systemd/system/fleetrun-agent.service (0644); (re)writes /etc/fleetrun/agent.env (0600,
#   dir 0700) when --server is given (a --ca-cert file is copied to /etc/fleetrun/ca.pem); registers the
#   node when --activation-id is given and it has no identity yet (state in /var/lib/fleetrun, 0700);
#   then enables the service and (re)starts it. The activation code comes from --activation-code-file
#   (- for standard input) or env FLEETRUN_ACTIVATION_CODE: never from this command line. Run again
#   with a new --binary to upgrade: the restart leaves running scripts alone (KillMode=process).
# register: install's settings, registration and start alone, for a node whose files are in place
#   (the .deb ships this script as /usr/share/fleetrun-agent/install-agent.sh).
# uninstall: stops and disables the service, removes the unit and the binary. The node identity
#   and the config stay (installing again resumes as the same node) unless --purge removes them.
#   A node cannot deregister itself: the server's administrator does (aws ssm
#   deregister-managed-instance), with the node id this prints.
#
# --binary  the fleetrun-agent to install (default: fleetrun-agent beside this script)
# --unit    the unit file (default: fleetrun-agent.service beside this script, or in systemd/)
# --root    install into DIR instead of / (packaging, tests): systemd is not asked to start
#           anything, `systemctl --root` only enables the unit
# --no-start  install, configure and register, but do not enable or start the service
set -euo pipefail

BIN_PATH=/usr/local/bin/fleetrun-agent
UNIT_PATH=/etc/systemd/system/fleetrun-agent.service
PACKAGE_UNIT_PATH=/usr/lib/systemd/system/fleetrun-agent.service
CONFIG_DIR=/etc/fleetrun
STATE_DIR=/var/lib/fleetrun
UNIT=fleetrun-agent.service
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

die() {
    echo "install-agent.sh: $*" >&2
    exit 2
}
say() { echo "install-agent.sh: $*" >&2; }

# The header above, as help: on stdout and exit 0 when asked for, else on stderr and exit 2.
usage() {
    local text
    text="$(sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//')"
    if [ "${1-}" = help ]; then
        echo "$text"
        exit 0
    fi
    echo "$text" >&2
    exit 2
}

# A value written into the EnvironmentFile: one line, nothing systemd or a shell would reinterpret.
plain() {
    case "$2" in
        '' | *[[:space:]\"\'\\\$\`]*) die "$1: ${2@Q} is empty or holds spaces, quotes, \\, \$ or \`" ;;
    esac
}

# Whether a systemd manager runs on this machine (not in a container or chroot without one).
systemd_running() { [ -d /run/systemd/system ]; }

# The node id in the state dir's identity.json, or nothing.
node_id() {
    local file="$ROOT$STATE_DIR/identity.json"
    [ -f "$file" ] || return 0
    sed -n 's/.*"instanceId" *: *"\([^"]*\)".*/\1/p' "$file" | head -n 1
}

# `install` (copy the binary and the unit, then configure) and `register` (configure only: the
# .deb installed the files).
install_agent() {
    local action="$1" binary="" unit="" server="" ca_cert="" fingerprint="" activation_id=""
    local code_file="" start=1
    shift
    while [ $# -gt 0 ]; do
        case "$1" in
            --binary | --unit) [ "$action" = install ] || die "$1: only for install" ;;&
            --binary) binary="${2-}"; shift 2 || die "--binary needs a value" ;;
            --unit) unit="${2-}"; shift 2 || die "--unit needs a value" ;;
            --server) server="${2-}"; shift 2 || die "--server needs a value" ;;
            --ca-cert) ca_cert="${2-}"; shift 2 || die "--ca-cert needs a value" ;;
            --server-fingerprint) fingerprint="${2-}"; shift 2 || die "--server-fingerprint needs a value" ;;
            --activation-id) activation_id="${2-}"; shift 2 || die "--activation-id needs a value" ;;
            --activation-code-file) code_file="${2-}"; shift 2 || die "--activation-code-file needs a value" ;;
            --activation-code) die "--activation-code: the code must not sit on a command line; use --activation-code-file FILE (or - for standard input) or env FLEETRUN_ACTIVATION_CODE" ;;
            --root) ROOT="${2-}"; shift 2 || die "--root needs a value" ;;
            --no-start) start=0; shift ;;
            -h | --help) usage help ;;
            *) die "unknown argument $1 (--help lists them)" ;;
        esac
    done
    check_root
    if [ "$action" = install ]; then
        [ -n "$binary" ] || binary="$HERE/fleetrun-agent"
        if [ -z "$unit" ]; then
            unit="$HERE/$UNIT"
            [ -f "$unit" ] || unit="$HERE/systemd/$UNIT"
        fi
        [ -x "$binary" ] || die "no fleetrun-agent binary at $binary (--binary PATH)"
        [ -f "$unit" ] || die "no unit file at $unit (--unit PATH)"
    fi
    [ -z "$ca_cert" ] || [ -f "$ca_cert" ] || die "--ca-cert: no file $ca_cert"
    [ -z "$code_file" ] || [ -n "$activation_id" ] || die "--activation-code-file needs --activation-id"
    [ -n "$server" ] || [ -z "$ca_cert$fingerprint" ] || die "--ca-cert and --server-fingerprint go with --server"
    local env_file="$ROOT$CONFIG_DIR/agent.env"
    if [ -z "$server" ] && [ ! -f "$env_file" ]; then
        die "--server is required (no $CONFIG_DIR/agent.env yet)"
    fi

    if [ "$action" = install ]; then
        install -d -m 0755 "$ROOT$(dirname "$BIN_PATH")" "$ROOT$(dirname "$UNIT_PATH")"
        # Through a temporary name, then rename: an upgrade never leaves a half-written binary,
        # and a running agent keeps its old inode.
        install -m 0755 "$binary" "$ROOT$BIN_PATH.new"
        mv -f "$ROOT$BIN_PATH.new" "$ROOT$BIN_PATH"
        install -m 0644 "$unit" "$ROOT$UNIT_PATH"
        say "installed $BIN_PATH and $UNIT_PATH"
    fi

    install -d -m 0700 "$ROOT$CONFIG_DIR"
    if [ -n "$server" ]; then
        plain --server "$server"
        [ -z "$fingerprint" ] || plain --server-fingerprint "$fingerprint"
        # A certificate is public: readable, unlike the settings operators may add secrets to.
        [ -z "$ca_cert" ] || install -m 0644 "$ca_cert" "$ROOT$CONFIG_DIR/ca.pem"
        local tmp
        tmp="$(mktemp "$env_file.XXXXXX")" # mktemp creates it 0600
        {
            echo "# fleetrun agent settings, read by $UNIT (fleetrun-agent --help lists them all)."
            echo "FLEETRUN_SERVER=$server"
            [ -z "$ca_cert" ] || echo "FLEETRUN_CA_CERT=$CONFIG_DIR/ca.pem"
            [ -z "$fingerprint" ] || echo "FLEETRUN_SERVER_FINGERPRINT=$fingerprint"
        } >"$tmp"
        chmod 0600 "$tmp"
        mv -f "$tmp" "$env_file"
        say "wrote $CONFIG_DIR/agent.env"
    fi

    local id
    id="$(node_id)"
    if [ -n "$id" ]; then
        [ -z "$activation_id" ] || say "already registered as $id: not registering again (uninstall --purge starts over)"
    elif [ -n "$activation_id" ]; then
        register "$activation_id" "$code_file"
        id="$(node_id)"
    else
        say "not registered yet: $0 register --activation-id ID --activation-code-file - (the service starts once registered)"
    fi

    if [ "$start" = 0 ]; then
        say "not enabling the service (--no-start): systemctl enable --now $UNIT"
    elif [ -n "$ROOT" ]; then
        systemctl --root="$ROOT" --quiet enable "$UNIT"
        say "enabled $UNIT in $ROOT"
    elif systemd_running; then
        systemctl daemon-reload
        systemctl --quiet enable "$UNIT"
        # restart, not start: an upgrade must run the new binary. Unregistered, the unit's
        # condition skips the start.
        systemctl restart "$UNIT"
        if [ -n "$id" ]; then
            say "started $UNIT as node $id; its log: journalctl -u $UNIT"
        fi
    else
        systemctl --quiet enable "$UNIT" || true
        say "systemd is not running here: enabled $UNIT for the next boot, nothing started"
    fi
}

# Registers with the installed binary and the settings of agent.env (read as data, not sourced);
# the code reaches it through the same file, standard input or environment this script was given.
register() {
    local activation_id="$1" code_file="$2" line key value
    local -a args=(register --state-dir "$ROOT$STATE_DIR" --activation-id "$activation_id")
    [ -z "$code_file" ] || args+=(--activation-code-file "$code_file")
    while IFS= read -r line || [ -n "$line" ]; do
        case "$line" in FLEETRUN_*=*) ;; *) continue ;; esac
        key="${line%%=*}"
        value="${line#*=}"
        # The config names files by their installed path; under --root they live below it.
        case "$key" in FLEETRUN_CA_CERT) [ -z "$ROOT" ] || value="$ROOT$value" ;; esac
        export "$key=$value"
    done <"$ROOT$CONFIG_DIR/agent.env"
    install -d -m 0700 "$ROOT$STATE_DIR"
    # The binary the unit runs: systemd looks in /usr/local/bin, then /usr/bin.
    local agent="$ROOT/usr/local/bin/fleetrun-agent"
    [ -x "$agent" ] || agent="$ROOT/usr/bin/fleetrun-agent"
    [ -x "$agent" ] || die "fleetrun-agent is not installed (in /usr/local/bin or /usr/bin)"
    # An installer should say soon what is wrong: retry an unreachable server for a minute only.
    local rc=0
    FLEETRUN_REGISTER_TIMEOUT="${FLEETRUN_REGISTER_TIMEOUT:-60s}" NO_COLOR=1 \
        "$agent" "${args[@]}" >&2 || rc=$?
    if [ "$rc" != 0 ]; then
        say "registration failed (fleetrun-agent exit $rc, see above): the service is not enabled"
        exit "$rc"
    fi
}

uninstall_agent() {
    local purge=0
    while [ $# -gt 0 ]; do
        case "$1" in
            --purge) purge=1; shift ;;
            --root) ROOT="${2-}"; shift 2 || die "--root needs a value" ;;
            -h | --help) usage help ;;
            *) die "unknown argument $1 (--help lists them)" ;;
        esac
    done
    check_root
    if [ ! -f "$ROOT$UNIT_PATH" ] && [ -f "$ROOT$PACKAGE_UNIT_PATH" ]; then
        die "the fleetrun-agent package installed this agent: apt remove fleetrun-agent (apt purge: its identity and settings too)"
    fi
    local id
    id="$(node_id)"
    if [ -n "$ROOT" ]; then
        [ ! -f "$ROOT$UNIT_PATH" ] || systemctl --root="$ROOT" --quiet disable "$UNIT"
    elif systemd_running; then
        # Scripts still running keep running (KillMode=process) and end on their own.
        systemctl --quiet disable --now "$UNIT" 2>/dev/null || true
    else
        systemctl --quiet disable "$UNIT" 2>/dev/null || true
    fi
    rm -f "$ROOT$UNIT_PATH" "$ROOT$BIN_PATH"
    if [ -z "$ROOT" ] && systemd_running; then
        systemctl daemon-reload
        systemctl reset-failed "$UNIT" 2>/dev/null || true
    fi
    say "removed $UNIT_PATH and $BIN_PATH"
    if [ "$purge" = 1 ]; then
        rm -rf "$ROOT$STATE_DIR" "$ROOT$CONFIG_DIR"
        say "removed $STATE_DIR and $CONFIG_DIR"
        if [ -n "$id" ]; then
            say "node $id is still known to the server; its administrator removes it with:"
            say "  aws ssm deregister-managed-instance --instance-id $id"
        fi
    elif [ -n "$id" ] || [ -d "$ROOT$CONFIG_DIR" ]; then
        say "kept $STATE_DIR (node ${id:-not registered}) and $CONFIG_DIR: installing again resumes as this node; --purge removes them"
    fi
}

# --root: absolute (a relative one would change meaning with each cd), without a trailing /.
check_root() {
    case "$ROOT" in
        '') ;;
        /*) ROOT="${ROOT%/}" ;;
        *) die "--root must be an absolute path, not $ROOT" ;;
    esac
    [ -n "$ROOT" ] || [ "$(id -u)" = 0 ] || die "installing into / needs root (sudo)"
}

ROOT=""
[ $# -gt 0 ] || usage
action="$1"
shift
case "$action" in
    install | register) install_agent "$action" "$@" ;;
    uninstall) uninstall_agent "$@" ;;
    -h | --help) usage help ;;
    *) die "unknown action $action: install, register or uninstall" ;;
esac
