#!/usr/bin/env bash
# Benchmarks (figures, not tests), against the emulator:
# 1. trigger capacity: VideoGenerationTrigger vs HttpSensorTrigger at N = 1,000 and 5,000, a client
#    comparison and the DAG-parse import cost;
# 2. download memory: peak RSS growth while saving a 200 MB video.
# Usage: scripts/benchmark.sh [trigger benchmark arguments, e.g. --n 1000]
source "$(dirname "${BASH_SOURCE[0]}")/_env.sh"
cd "$ROOT"
venv="$(airflow_env 3.3.2 test,benchmark)"
export AIRFLOW__CORE__LOAD_EXAMPLES=False
"$venv/bin/python" benchmarks/trigger_capacity.py "$@"
echo
echo "Download memory (VideoSaver, 200 MB video):"
"$venv/bin/python" benchmarks/download_memory.py --mb 200
