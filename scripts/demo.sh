#!/usr/bin/env bash
# The main job, end to end: start the API emulator, run example_vidgen_text_to_video with
# `airflow dags test` on embedded Airflow 3.3.2 (SQLite, nothing else to start), print the result.
# Usage: scripts/demo.sh [dag_id]
source "$(dirname "${BASH_SOURCE[0]}")/_env.sh"
cd "$ROOT"
DAG_ID="${1:-example_vidgen_text_to_video}"

venv="$(airflow_env 3.3.2)"
work="$ROOT/.demo"
rm -rf "$work" && mkdir -p "$work"

echo "==> starting the API emulator"
"$venv/bin/python" -m airflow_provider_vidgen.testing --url-file "$work/url" >"$work/emulator.log" 2>&1 &
emulator_pid=$!
trap 'kill "$emulator_pid" 2>/dev/null || true' EXIT
for _ in $(seq 100); do [ -s "$work/url" ] && break; sleep 0.1; done
[ -s "$work/url" ] || { cat "$work/emulator.log" >&2; echo "emulator did not start" >&2; exit 1; }
base_url="$(cat "$work/url")"
echo "    emulator at $base_url"

export AIRFLOW_HOME="$work/airflow-home"
export AIRFLOW__CORE__DAGS_FOLDER="$ROOT/example_dags"
export AIRFLOW__CORE__LOAD_EXAMPLES=False
export VIDGEN_EXAMPLE_POLL_INTERVAL=1
export AIRFLOW_CONN_VIDGEN_DEFAULT="{\"conn_type\": \"vidgen\", \"host\": \"$base_url\", \"password\": \"test-key\"}"

echo "==> airflow db migrate (SQLite in .demo/airflow-home)"
"$venv/bin/airflow" db migrate >"$work/db-migrate.log" 2>&1 || { tail -50 "$work/db-migrate.log"; exit 1; }

echo "==> airflow dags test $DAG_ID (log: .demo/dags-test.log)"
status=0
"$venv/bin/airflow" dags test "$DAG_ID" >"$work/dags-test.log" 2>&1 || status=$?
grep -E "(Creating|Created) (Videos|StarVideos) generation|Generation .* (is |->|failed)" "$work/dags-test.log" \
  | sed -E 's/^.*\[(info|warning|error) *\] /    /; s/ \[airflow[^]]*\].*$//' || true

"$venv/bin/python" - "$AIRFLOW_HOME/airflow.db" "$DAG_ID" <<'PY'
import sys
from airflow_provider_vidgen.testing.airflow_db import latest_run, run_xcoms

db, dag_id = sys.argv[1], sys.argv[2]
run_id, state = latest_run(db, dag_id)
print(f"==> run {run_id}: {state}")
for (task_id, map_index, key), value in sorted(run_xcoms(db, dag_id, run_id).items(), key=str):
    if key == "generation_id":
        print(f"    generation id ({task_id}): {value}")
    elif key == "video_url" or (key == "return_value" and isinstance(value, dict)):
        url = value if isinstance(value, str) else value.get("video_url")
        print(f"    video URL ({task_id}): {url}")
sys.exit(0 if state == "success" else 1)
PY
exit "$status"
