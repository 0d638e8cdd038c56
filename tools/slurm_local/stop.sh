#!/usr/bin/env bash
# Stops only what start.sh started, by the pids in its pid files: cancels this cluster's jobs, then
# slurmd, slurmctld and munged (TERM, then KILL after 10 s).
set -uo pipefail
ROOT=${SLURM_ROOT:-${TMPDIR:-/tmp}/local-slurm}
export SLURM_CONF="$ROOT/etc/slurm.conf"

alive() {
  local p; [ -s "$1" ] || return 1; p=$(cat "$1" 2>/dev/null) || return 1
  [ -r "/proc/$p/stat" ] || return 1
  [ "$(cat "/proc/$p/comm" 2>/dev/null)" = "$2" ] || return 1
  [ "$(awk '{print $3}' "/proc/$p/stat")" != Z ]
}
stop() {  # stop PIDFILE NAME
  if ! alive "$1" "$2"; then echo "$2: not running"; rm -f "$1"; return 0; fi
  local p; p=$(cat "$1"); kill -TERM "$p"
  for _ in $(seq 1 100); do alive "$1" "$2" || { echo "$2: stopped (pid $p)"; rm -f "$1"; return 0; }; sleep 0.1; done
  kill -KILL "$p" 2>/dev/null; echo "$2: killed (pid $p)"; rm -f "$1"
}

# jobs first, so their slurmstepd and task processes end while slurmd is still up
if alive "$ROOT/run/slurmctld.pid" slurmctld; then
  ids=$(squeue -h -o %A 2>/dev/null | sort -u | tr '\n' ' ')
  if [ -n "${ids// /}" ]; then
    echo "cancelling jobs: $ids"; scancel $ids
    for _ in $(seq 1 150); do [ -z "$(squeue -h -o %A 2>/dev/null)" ] && break; sleep 0.1; done
  fi
fi
stop "$ROOT/run/slurmd.pid" slurmd
stop "$ROOT/run/slurmctld.pid" slurmctld
stop "$ROOT/munge/munged.pid" munged
for s in "$ROOT"/state/d/*_*.*; do [ -S "$s" ] && echo "WARNING: leftover step socket $s"; done 2>/dev/null
exit 0
