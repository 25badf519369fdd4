#!/usr/bin/env bash
# The whole test suite: ruff, mypy and pytest on Airflow 3.3.2 and on Airflow 2.11.2 (one virtualenv each).
# Usage: scripts/test.sh [extra pytest arguments]     e.g. scripts/test.sh -m "not e2e"
source "$(dirname "${BASH_SOURCE[0]}")/_env.sh"
cd "$ROOT"

failed=()
for version in "${AIRFLOW_VERSIONS[@]}"; do
  venv="$(airflow_env "$version")"
  echo "==> [Airflow $version] ruff"
  "$venv/bin/ruff" check . || failed+=("ruff check ($version)")
  "$venv/bin/ruff" format --check . || failed+=("ruff format ($version)")
  echo "==> [Airflow $version] mypy"
  "$venv/bin/mypy" || failed+=("mypy ($version)")
  echo "==> [Airflow $version] pytest"
  # A fresh AIRFLOW_HOME per run: nothing from ~/airflow leaks in.
  home="$(mktemp -d)"
  AIRFLOW_HOME="$home" "$venv/bin/python" -m pytest -p no:cacheprovider "$@" || failed+=("pytest ($version)")
  rm -rf "$home"
done

# The oldest supported Python, when the machine has it: the unit tests on Airflow 3.3.2
# (Python 3.10 resolves older pins, e.g. common-compat 1.20).
py310="$(find_python310)"
if [ "$("$PY" -c 'import sys; print(sys.version_info[:2] == (3, 10))')" = False ] && [ -n "$py310" ]; then
  venv="$(airflow_env 3.3.2 test "$py310")"
  echo "==> [Airflow 3.3.2, Python 3.10] pytest (without the airflow dags test runs)"
  home="$(mktemp -d)"
  AIRFLOW_HOME="$home" "$venv/bin/python" -m pytest -p no:cacheprovider -m "not e2e" -q "$@" ||
    failed+=("pytest (3.3.2, Python 3.10)")
  rm -rf "$home"
else
  echo "==> no separate Python 3.10 on this machine: skipping the Python 3.10 pass"
fi

if [ ${#failed[@]} -gt 0 ]; then
  echo "FAILED: ${failed[*]}" >&2
  exit 1
fi
echo "All checks passed on Airflow ${AIRFLOW_VERSIONS[*]}."
