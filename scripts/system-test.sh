#!/usr/bin/env bash
# The system test: the provider in a real Airflow 3.3.2 cluster on loopback (Postgres, Redis, Celery
# workers, two triggerers, scheduler, dag-processor, api-server) under faults; see README
# "System test (real cluster)". Options: --generations N (default 200), --api-url URL (key in
# VIDGEN_API_KEY), --report PATH, --keep. Exits non-zero if a rule breaks.
source "$(dirname "${BASH_SOURCE[0]}")/_env.sh"
cd "$ROOT"

need=()
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
[ -x /usr/lib/postgresql/15/bin/postgres ] || need+=(postgresql)
if [ "${#need[@]}" -gt 0 ]; then
  echo "==> apt-get install -y ${need[*]}" >&2
  if [ "$(id -u)" = 0 ]; then SUDO=(); else SUDO=(sudo); fi
  "${SUDO[@]}" apt-get install -y "${need[@]}" >&2 ||
    { "${SUDO[@]}" apt-get update >&2 && "${SUDO[@]}" apt-get install -y "${need[@]}" >&2; }
fi
id nobody >/dev/null 2>&1 || { echo "error: the user 'nobody' is needed to run PostgreSQL" >&2; exit 1; }

uv="$(uv_bin)"
venv="$VENVS/system-airflow-3.3.2"
[ -x "$venv/bin/python" ] || "$uv" venv --quiet --python "$PY" "$venv" >&2
echo "==> installing Airflow 3.3.2 + the Celery and HTTP providers into ${venv#"$ROOT/"}" >&2
VIRTUAL_ENV="$venv" "$uv" pip install --quiet --constraint "$ROOT/constraints/airflow-3.3.2.txt" \
  "apache-airflow==3.3.2" -e "$ROOT[system]" >&2

# The runner stops everything it starts; this trap is the safety net for a runner that was itself
# killed: every process session it recorded is killed, with whatever is left in it.
runner_pid=""
pids_file="$(mktemp)"
cleanup() {
  local status=$?
  trap - EXIT INT TERM
  if [ -n "$runner_pid" ] && kill -0 "$runner_pid" 2>/dev/null; then
    kill -TERM "$runner_pid" 2>/dev/null || true
    for _ in $(seq 1 600); do kill -0 "$runner_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$runner_pid" 2>/dev/null || true
  fi
  if [ -s "$pids_file" ]; then
    while read -r sid; do
      for pid in $(ps -eo pid=,sid= | awk -v s="$sid" '$2 == s {print $1}'); do kill -KILL "$pid" 2>/dev/null || true; done
    done <"$pids_file"
  fi
  rm -f "$pids_file"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

PYTHONPATH="$ROOT" VIDGEN_SYSTEM_PIDS="$pids_file" "$venv/bin/python" -m system_test.runner "$@" &
runner_pid=$!
wait "$runner_pid"
