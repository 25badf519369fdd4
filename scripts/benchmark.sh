#!/usr/bin/env bash
# Trigger capacity benchmark (figures, not a test): VideoGenerationTrigger vs HttpSensorTrigger at
# N = 1,000 and 5,000 against the emulator, a client comparison and the DAG-parse import cost.
# Usage: scripts/benchmark.sh [benchmark arguments, e.g. --n 1000]
source "$(dirname "${BASH_SOURCE[0]}")/_env.sh"
cd "$ROOT"
venv="$(airflow_env 3.3.2 test,benchmark)"
AIRFLOW__CORE__LOAD_EXAMPLES=False "$venv/bin/python" benchmarks/trigger_capacity.py "$@"
