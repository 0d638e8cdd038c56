# Source me (POSIX sh, from the repository root or with bash from anywhere): starts the private local
# Slurm when this machine allows it and exports SLURM_CONF and PATH for it. Harmless when Slurm cannot
# start: says why on stderr and leaves the environment unchanged.
_sl_dir=$(dirname "${BASH_SOURCE:-tools/slurm_local/env.sh}")
if _sl_out=$(bash "$_sl_dir/start.sh" 2>&1); then
  eval "$(printf '%s\n' "$_sl_out" | grep '^export SLURM_CONF=' | tail -n 1)"
  echo "slurm_local: running, SLURM_CONF=$SLURM_CONF" >&2
else
  echo "slurm_local: not started; tests marked 'slurm' will say why. Last lines:" >&2
  printf '%s\n' "$_sl_out" | tail -n 5 >&2
fi
unset _sl_dir _sl_out
true
