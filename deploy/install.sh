#!/bin/sh
# Install the Ringfence agent and its systemd unit.
#
#   sudo deploy/install.sh [--agent PATH] [--cli PATH] [--policy FILE] [--start]
#   deploy/install.sh --prefix /tmp/root ...   # staged install, no systemctl
#
# Never overwrites an existing /etc/ringfence/policy.yaml and never starts the
# service unless --start is given. Run with --help for details.
set -eu

usage() {
    cat <<'USAGE'
Usage: install.sh [options]

  --agent PATH   ringfence-agent binary to install
                 (default: ./target/release/ringfence-agent)
  --cli PATH     `ringfence` CLI used to validate the policy and installed
                 next to the agent (default: ./target/release/ringfence, else
                 `ringfence` from PATH; validation is skipped if none)
  --policy FILE  policy to install as /etc/ringfence/policy.yaml if that file
                 does not exist yet (an existing policy is never overwritten)
  --prefix DIR   install under DIR instead of / (for testing); skips systemctl
                 and the root check
  --start        enable and start ringfence-agent.service after installing
  --help         show this help
USAGE
}

die() {
    echo "install.sh: error: $*" >&2
    exit 1
}

note() {
    echo "install.sh: $*"
}

script_dir=$(CDPATH='' cd -- "$(dirname -- "$0")" && pwd)
agent=./target/release/ringfence-agent
cli=
policy=
prefix=
start=no

while [ $# -gt 0 ]; do
    case "$1" in
        --agent) [ $# -ge 2 ] || die "--agent needs a path"; agent=$2; shift 2 ;;
        --cli) [ $# -ge 2 ] || die "--cli needs a path"; cli=$2; shift 2 ;;
        --policy) [ $# -ge 2 ] || die "--policy needs a file"; policy=$2; shift 2 ;;
        --prefix) [ $# -ge 2 ] || die "--prefix needs a directory"; prefix=$2; shift 2 ;;
        --start) start=yes; shift ;;
        -h | --help) usage; exit 0 ;;
        *) usage >&2; die "unknown option: $1" ;;
    esac
done

if [ -n "$prefix" ]; then
    case "$prefix" in
        /*) ;;
        *) die "--prefix must be an absolute path" ;;
    esac
    prefix=${prefix%/}
    [ -n "$prefix" ] || die "--prefix / is not allowed; omit --prefix for a real install"
elif [ "$(id -u)" -ne 0 ]; then
    die "must run as root (or use --prefix DIR for a staged install)"
fi

[ -f "$agent" ] && [ -x "$agent" ] || die "agent binary not found or not executable: $agent (build it with: cargo build --release -p ringfence-agent)"
unit_src=$script_dir/ringfence-agent.service
[ -f "$unit_src" ] || die "unit file not found: $unit_src"

if [ -z "$cli" ]; then
    if [ -x ./target/release/ringfence ]; then
        cli=./target/release/ringfence
    elif command -v ringfence >/dev/null 2>&1; then
        cli=$(command -v ringfence)
    fi
elif [ ! -x "$cli" ]; then
    die "CLI binary not found or not executable: $cli"
fi

etc_dir=$prefix/etc/ringfence
state_dir=$prefix/var/lib/ringfence
bin_dir=$prefix/usr/local/bin
unit_dir=$prefix/etc/systemd/system
doc_dir=$prefix/usr/local/share/doc/ringfence
dest_policy=$etc_dir/policy.yaml

# Validate before touching the system.
if [ -n "$policy" ]; then
    [ -f "$policy" ] || die "policy file not found: $policy"
    if [ -n "$cli" ]; then
        note "validating $policy with $cli"
        "$cli" policy check "$policy" || die "policy $policy is invalid; nothing installed"
    else
        note "warning: no 'ringfence' CLI found; policy not validated (use --cli PATH)"
    fi
fi

mkdir -p "$bin_dir" "$unit_dir" "$doc_dir" "$etc_dir" "$state_dir"
chmod 0750 "$etc_dir"
chmod 0700 "$state_dir"

# Copy to a temporary name then rename: replacing a running binary is safe.
cp "$agent" "$bin_dir/.ringfence-agent.new"
chmod 0755 "$bin_dir/.ringfence-agent.new"
mv -f "$bin_dir/.ringfence-agent.new" "$bin_dir/ringfence-agent"
note "installed $bin_dir/ringfence-agent"
if [ -n "$cli" ]; then
    cp "$cli" "$bin_dir/.ringfence.new"
    chmod 0755 "$bin_dir/.ringfence.new"
    mv -f "$bin_dir/.ringfence.new" "$bin_dir/ringfence"
    note "installed $bin_dir/ringfence"
fi

if [ -e "$dest_policy" ]; then
    if [ -n "$policy" ]; then
        note "keeping existing $dest_policy (not overwritten by $policy)"
    fi
elif [ -n "$policy" ]; then
    cp "$policy" "$dest_policy"
    chmod 0640 "$dest_policy"
    note "installed policy $dest_policy"
fi

cp "$unit_src" "$unit_dir/ringfence-agent.service"
chmod 0644 "$unit_dir/ringfence-agent.service"
note "installed $unit_dir/ringfence-agent.service"
# Workload units start only once the agent enforces (drop-ins are inert for absent units).
for dropin in "$script_dir"/systemd/*.service.d-ringfence.conf; do
    [ -f "$dropin" ] || continue
    unit=$(basename "$dropin" .d-ringfence.conf)
    mkdir -p "$unit_dir/$unit.d"
    cp "$dropin" "$unit_dir/$unit.d/ringfence.conf"
    chmod 0644 "$unit_dir/$unit.d/ringfence.conf"
    note "installed $unit_dir/$unit.d/ringfence.conf"
done
if [ -f "$script_dir/README.md" ]; then
    cp "$script_dir/README.md" "$doc_dir/README.md"
    chmod 0644 "$doc_dir/README.md"
fi

if [ -n "$prefix" ]; then
    note "staged install under $prefix: systemctl skipped"
    [ "$start" = no ] || note "--start ignored with --prefix"
else
    systemctl daemon-reload
    if [ "$start" = yes ]; then
        [ -e "$dest_policy" ] || die "cannot start: $dest_policy does not exist (use --policy FILE)"
        systemctl enable --now ringfence-agent.service
        note "ringfence-agent.service enabled and started"
    fi
fi

cat <<EOF_NEXT

Next steps:
EOF_NEXT
if [ ! -e "$dest_policy" ]; then
    echo "  - write a policy to $dest_policy (then check it: ringfence policy check $dest_policy)"
fi
if [ "$start" = no ] || [ -n "$prefix" ]; then
    echo "  - start enforcement:    systemctl enable --now ringfence-agent"
fi
cat <<'EOF_NEXT'
  - status:               ringfence-agent status --bpffs /sys/fs/bpf/ringfence
  - reload the policy:    systemctl reload ringfence-agent
  - logs:                 journalctl -u ringfence-agent
  - stop the daemon:      systemctl stop ringfence-agent   (enforcement stays pinned!)
  - remove enforcement:   ringfence-agent detach --bpffs /sys/fs/bpf/ringfence
EOF_NEXT
