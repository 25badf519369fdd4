"""The baseline of the system test: what a user would write without this provider.

The HTTP provider's ``HttpOperator`` creates each generation and ``HttpSensor(deferrable=True)``
waits for it, against the same API in the same cluster. The key has to travel in a templated
header (the API wants ``Authorization: Bearer``), so it ends up in rendered templates and trigger
rows; the runner gives this DAG a key of its own and reports where it was found.
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timedelta

from airflow.providers.http.operators.http import HttpOperator
from airflow.providers.http.sensors.http import HttpSensor

try:
    from airflow.sdk import DAG
except ImportError:  # Airflow 2
    from airflow import DAG

N = int(os.environ.get("VIDGEN_SYSTEM_N", "40"))
BASE_PATH = "/kyyReactApiServer"
AUTH = {"Authorization": "Bearer {{ conn.vidgen_http.password }}"}


def result_endpoint(response):
    """The result path of the generation the create answered with (pushed to XCom)."""
    return BASE_PATH + "/v1/result/" + response.json()["data"]["projectId"]


with DAG(
    dag_id="vidgen_system_baseline",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    is_paused_upon_creation=False,
    max_active_tasks=500,
    default_args={"retries": 2, "retry_delay": timedelta(seconds=5)},
    tags=["system-test"],
):
    create = HttpOperator.partial(
        task_id="create",
        http_conn_id="vidgen_http",
        method="POST",
        endpoint=BASE_PATH + "/v1/videos/videos",
        headers={**AUTH, "Content-Type": "application/json"},
        response_filter=result_endpoint,
        retries=0,  # a retried create would bill again
    ).expand(
        data=[
            json.dumps({"model": "videos", "prompt": f"Baseline item [b{i:04d}]: a lighthouse at dusk", "duration": 5})
            for i in range(N)
        ]
    )
    HttpSensor.partial(
        task_id="wait",
        http_conn_id="vidgen_http",
        method="GET",
        headers={**AUTH, "X-Emulator-404-Until-Done": "1"},
        deferrable=True,
        poke_interval=5,
        timeout=900,
    ).expand(endpoint=create.output)
