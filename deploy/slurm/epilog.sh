#!/bin/sh
# Ringfence Slurm epilog: removes the job's file written by prolog.sh (slurm.conf: Epilog=).
# Never fails the job (a non-zero epilog exit drains the node).
set -u
dir=${RINGFENCE_JOB_INFO_DIR:-/run/ringfence/slurm-jobs}
job=${SLURM_JOB_ID:-}
case $job in
    '' | *[!0-9]*) exit 0 ;;
esac
rm -f "$dir/$job"
exit 0
