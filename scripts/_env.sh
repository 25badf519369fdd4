# Shared by scripts/test.sh, scripts/demo.sh and scripts/lock.sh (sourced, not run).
# Builds isolated virtualenvs under .venv/ with uv; needs only Python >= 3.10 on PATH.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENVS="$ROOT/.venv"
AIRFLOW_VERSIONS=(3.3.2 2.11.2)
export UV_PYTHON_DOWNLOADS=never   # use the machine's Python, never download one

find_python() {
  local candidate
  for candidate in "${PYTHON:-}" python3 python3.13 python3.12 python3.11 python3.10; do
    [ -n "$candidate" ] || continue
    if command -v "$candidate" >/dev/null 2>&1 &&
       "$candidate" -c 'import sys; sys.exit(0 if (3, 10) <= sys.version_info[:2] < (3, 13) else 1)' 2>/dev/null; then
      command -v "$candidate"
      return 0
    fi
  done
  echo "error: need Python 3.10, 3.11 or 3.12 on PATH (or set PYTHON=/path/to/python)" >&2
  return 1
}

PY="$(find_python)"

# find_python310: a Python 3.10 interpreter if the machine has one (on PATH or under pyenv), else nothing.
find_python310() {
  local candidate
  for candidate in python3.10 "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.10*/bin/python3.10 /usr/bin/python3.10; do
    if "$candidate" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 10) else 1)' >/dev/null 2>&1; then
      command -v "$candidate" 2>/dev/null || echo "$candidate"
      return 0
    fi
  done
  return 0
}

uv_bin() {
  # uv from PyPI, in a tools virtualenv of its own.
  if [ ! -x "$VENVS/tools/bin/uv" ]; then
    echo "==> bootstrapping uv into .venv/tools" >&2
    "$PY" -m venv "$VENVS/tools" >&2
    "$VENVS/tools/bin/python" -m pip install --quiet --disable-pip-version-check "uv>=0.5" >&2
  fi
  echo "$VENVS/tools/bin/uv"
}

# airflow_env VERSION [EXTRAS] [PYTHON]: a virtualenv with Airflow VERSION, this package (editable)
# and the test tools (or EXTRAS, default "test"), pinned by constraints/airflow-VERSION.txt, on
# PYTHON (default: the one found above). Prints the venv path.
airflow_env() {
  local version="$1" extras="${2:-test}" python="${3:-$PY}" venv uv
  venv="$VENVS/airflow-$version"
  [ "$python" = "$PY" ] || venv="$venv-$("$python" -c 'import sys; print("py%d%d" % sys.version_info[:2])')"
  uv="$(uv_bin)"
  if [ ! -x "$venv/bin/python" ]; then
    echo "==> creating ${venv#"$ROOT/"}" >&2
    "$uv" venv --quiet --python "$python" "$venv" >&2
  fi
  echo "==> installing Airflow $version + airflow-provider-vidgen into ${venv#"$ROOT/"}" >&2
  VIRTUAL_ENV="$venv" "$uv" pip install --quiet \
    --constraint "$ROOT/constraints/airflow-$version.txt" \
    "apache-airflow==$version" -e "$ROOT[$extras]" >&2
  echo "$venv"
}
