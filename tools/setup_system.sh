#!/usr/bin/env bash
# Installs the Debian packages the test suite needs (Fashion-MNIST, a local Slurm, munge) when missing.
# Idempotent: a no-op (well under a second) when everything is installed. Needs root to install; as
# another user it only reports what is missing, so `make test` still runs the tests that need nothing.
set -euo pipefail
PKGS=(dataset-fashion-mnist slurmctld slurmd slurm-client munge)

installed() { [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" = "install ok installed" ]; }

if ! command -v dpkg-query >/dev/null 2>&1; then
  echo "setup_system: not a Debian-like system; install by hand: ${PKGS[*]}" >&2
  exit 0
fi
missing=()
for p in "${PKGS[@]}"; do installed "$p" || missing+=("$p"); done
if [ ${#missing[@]} -eq 0 ]; then
  echo "setup_system: all present (${PKGS[*]})"
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "setup_system: missing ${missing[*]}; run as root to install (tests needing them will report it)" >&2
  exit 0
fi
echo "setup_system: installing ${missing[*]}"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "setup_system: installed ${missing[*]}"
