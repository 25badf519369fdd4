#!/usr/bin/env bash
# The main job, end to end: start the API emulator, run example DAGs with `airflow dags test` on
# embedded Airflow 3.3.2 (SQLite, nothing else to start), print generation ids, video URLs and the
# videos saved under .demo/videos, and what the emulator billed.
# Usage: scripts/demo.sh [dag_id ...]   (default: example_vidgen_text_to_video example_vidgen_daily_pipeline)
source "$(dirname "${BASH_SOURCE[0]}")/_env.sh"
cd "$ROOT"
DAG_IDS=("$@")
[ ${#DAG_IDS[@]} -gt 0 ] || DAG_IDS=(example_vidgen_text_to_video example_vidgen_daily_pipeline)

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
export VIDGEN_EXAMPLE_OUTPUT="file://$work/videos"
export AIRFLOW_CONN_VIDGEN_DEFAULT="{\"conn_type\": \"vidgen\", \"host\": \"$base_url\", \"password\": \"test-key\"}"

echo "==> airflow db migrate (SQLite in .demo/airflow-home)"
"$venv/bin/airflow" db migrate >"$work/db-migrate.log" 2>&1 || { tail -50 "$work/db-migrate.log"; exit 1; }

overall=0
for DAG_ID in "${DAG_IDS[@]}"; do
  echo "==> airflow dags test $DAG_ID (log: .demo/$DAG_ID.log)"
  status=0
  "$venv/bin/airflow" dags test "$DAG_ID" >"$work/$DAG_ID.log" 2>&1 || status=$?
  grep -E "(Creating|Created) (Videos|StarVideos) generation|Generation .* (is |->|failed)|Saved generation|already exists" \
    "$work/$DAG_ID.log" | sed -E 's/^.*\[(info|warning|error) *\] /    /; s/ \[airflow[^]]*\].*$//' || true
  "$venv/bin/python" - "$AIRFLOW_HOME/airflow.db" "$DAG_ID" <<'PY' || status=1
import sys
from airflow_provider_vidgen.testing.airflow_db import latest_run, run_xcoms

db, dag_id = sys.argv[1], sys.argv[2]
run_id, state = latest_run(db, dag_id)
print(f"    run {run_id}: {state}")
for (task_id, map_index, key), value in sorted(run_xcoms(db, dag_id, run_id).items(), key=str):
    if key == "generation_id":
        print(f"    generation id ({task_id}): {value}")
    elif key == "video_url" or (key == "return_value" and isinstance(value, dict) and "video_url" in value):
        url = value if isinstance(value, str) else value.get("video_url")
        print(f"    video URL ({task_id}): {url}")
    elif isinstance(value, dict) and "sha256" in value:
        print(f"    saved ({task_id}): {value['uri']} ({value['bytes']} bytes, sha256 {value['sha256'][:16]}...)")
sys.exit(0 if state == "success" else 1)
PY
  [ "$status" -eq 0 ] || overall=1
done
echo "==> videos saved under .demo/videos:"
find "$work/videos" -type f -name '*.mp4' 2>/dev/null | sed "s#^$ROOT/#    #" || true
echo "==> what the emulator was asked (GET /_emulator/stats):"
"$venv/bin/python" - "${base_url%/kyyReactApiServer}/_emulator/stats" <<'PY' || true
import json
import sys
import urllib.request

with urllib.request.urlopen(sys.argv[1], timeout=10) as answer:
    stats = json.load(answer)
created = {family: counts["created"] for family, counts in stats["creates"].items()}
by_family = ", ".join(f"{family} {count}" for family, count in created.items())
print(f"    generations created (billed): {sum(created.values())} ({by_family})")
print(f"    result reads: {sum(stats['reads'].values())}, downloads: {stats['requests']['download']}")
PY
exit "$overall"
