#!/bin/sh
# Ringfence Slurm prolog: records who a job belongs to for the Ringfence agent.
#
# Runs as root on every node of the allocation (slurm.conf: Prolog=, PrologFlags=Alloc). Writes
# <dir>/<jobid> as key=value lines, read by the agent's Slurm identity source:
#
#   user=<SLURM_JOB_USER>  account=<SLURM_JOB_ACCOUNT>  partition=<SLURM_JOB_PARTITION>
#   profile=<name>         from the job comment `ringfence:profile=<name>` (sbatch --comment)
#
# The directory is RINGFENCE_JOB_INFO_DIR (default /run/ringfence/slurm-jobs; the same as
# `sources.slurm.jobInfoDir` in the identity config). This script never fails the job: a
# non-zero prolog exit drains the node, and a job without its file is governed by the node's
# default policy anyway (fail closed). Problems go to syslog (tag ringfence-prolog).
set -u

dir=${RINGFENCE_JOB_INFO_DIR:-/run/ringfence/slurm-jobs}
scontrol=${SCONTROL:-scontrol}

log() { logger -t ringfence-prolog -- "$*" 2>/dev/null || echo "ringfence-prolog: $*" >&2; }

job=${SLURM_JOB_ID:-}
case $job in
    '' | *[!0-9]*) log "SLURM_JOB_ID is not a job id: '$job'"; exit 0 ;;
esac

# A value on one line, without control characters.
clean() { printf '%s' "$1" | tr -d '\000-\037'; }

# The profile: `ringfence:profile=<name>` anywhere in the job comment; names are
# [A-Za-z0-9._-] (anything else ends the name).
profile=
if info=$(timeout 10 "$scontrol" show job "$job" 2>/dev/null); then
    comment=$(printf '%s\n' "$info" | sed -n 's/^[[:space:]]*Comment=//p' | head -n 1)
    profile=$(printf '%s\n' "$comment" | sed -n 's/.*ringfence:profile=\([A-Za-z0-9._-]*\).*/\1/p' | head -n 1)
else
    log "job $job: scontrol show job failed; no profile recorded"
fi

if ! mkdir -p "$dir" 2>/dev/null; then
    log "job $job: cannot create $dir"
    exit 0
fi
tmp="$dir/.$job.$$"
{
    printf 'user=%s\n' "$(clean "${SLURM_JOB_USER:-}")"
    printf 'account=%s\n' "$(clean "${SLURM_JOB_ACCOUNT:-}")"
    printf 'partition=%s\n' "$(clean "${SLURM_JOB_PARTITION:-}")"
    if [ -n "$profile" ]; then printf 'profile=%s\n' "$profile"; fi
} >"$tmp" 2>/dev/null && chmod 0644 "$tmp" && mv -f "$tmp" "$dir/$job" || {
    rm -f "$tmp"
    log "job $job: cannot write $dir/$job"
}
exit 0
