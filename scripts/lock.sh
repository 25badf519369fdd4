#!/usr/bin/env bash
# Re-pin constraints/airflow-<version>.txt from constraints/requirements.in (for every Python >= 3.10).
source "$(dirname "${BASH_SOURCE[0]}")/_env.sh"
cd "$ROOT"
uv="$(uv_bin)"
for version in "${AIRFLOW_VERSIONS[@]}"; do
  # The system test's packages (the last section of requirements.in) are pinned for 3.3.2 only.
  drop_system='/^# scripts\/system-test.sh/,$d'; [ "$version" != 3.3.2 ] || drop_system=''
  { echo "apache-airflow==$version"; sed "$drop_system" constraints/requirements.in | grep -v '^#'; } \
    >"$VENVS/requirements-$version.in"
  "$uv" pip compile --quiet --universal --python-version 3.10 --no-header --no-annotate \
    "$VENVS/requirements-$version.in" -o "constraints/airflow-$version.txt"
  echo "pinned constraints/airflow-$version.txt"
done
