"""The system test: a real Airflow 3 cluster on loopback, the provider in it, under faults.

Run by ``scripts/system-test.sh`` (which installs what is missing and builds the virtualenv):
``python -m system_test.runner [--generations N] [--api-url URL] [--report PATH] [--keep]``.

1. Starts PostgreSQL (metadata DB, Celery result backend), Redis (broker), the API emulator, and
   Airflow: api-server, scheduler, dag-processor, two triggerers, two Celery workers.
2. Runs ``vidgen_system`` (N mapped generations, see ``plan.py``) with transient API faults, and
   meanwhile: kill -9 of one Celery worker's whole process tree while it holds creates in flight,
   kill -9 of one triggerer with waits on it, an API outage (connections refused) of ~20 s.
3. Clears the run's successful tasks (same logical date): they must create nothing.
4. Runs ``vidgen_system_starts`` (one wait of each shape, no faults) and checks each task's worker
   task-process starts (counted by the listener in ``system_test/plugins``) against ``--expect-starts``.
5. Runs the HTTP-provider baseline (``vidgen_system_baseline``) for the same N in the same cluster.
6. Checks the rules against the API's own request log, the files and a text dump of Postgres;
   writes the JSON report and prints it as tables. Exit status 1 if any rule broke.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import re
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import defaultdict
from dataclasses import asdict
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg2

from system_test import plan
from system_test.cluster import Cluster, cpu_seconds, free_port, wait_for

ROOT = Path(__file__).resolve().parent.parent
DAG_ID = "vidgen_system"
BASELINE_DAG_ID = "vidgen_system_baseline"
LOGICAL_DATE = "2026-01-02T00:00:00+00:00"
DS = "2026-01-02"
RUN_ID = "system"
BASELINE_RUN_ID = "baseline"
OUTAGE_SECONDS = 20
RERUN_TASKS = ("videos", "starvideos", "submit", "watch", "save")
#: A video URL with its (signed, temporary) query string, as the emulator issues them.
SIGNED_VIDEO_URL = re.compile(rb"/files/[\w.-]+\.mp4\?expires=")
STARTS_DAG_ID = "vidgen_system_starts"
STARTS_RUN_ID = "starts"
#: Worker task-process starts of each task of ``vidgen_system_starts`` (one try each): ``before``, every
#: deferred wait resumes on a worker; ``after``, a successful wait ends in the triggerer (and the
#: sensor also starts there), only saving a video resumes on a worker.
EXPECTED_STARTS = {
    "before": {"submit": 1, "sensor": 2, "create_wait": 2, "create_save": 2},
    "after": {"submit": 1, "sensor": 0, "create_wait": 1, "create_save": 2},
}


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


class Interrupted(Exception):
    pass


def _on_signal(signum: int, frame: Any) -> None:
    raise Interrupted(f"signal {signum}")


# -- the API and its request log --------------------------------------------------------------------


class Api:
    """The API under test and its own record of what it served."""

    def __init__(self, emulator: Any | None, admin_origin: str | None) -> None:
        self.emulator = emulator
        self.admin_origin = admin_origin

    @property
    def in_process(self) -> bool:
        return self.emulator is not None

    @property
    def has_log(self) -> bool:
        if self.in_process:
            return True
        try:
            self.requests()
            return True
        except Exception:
            return False

    def _admin(self, path: str, body: Any = None) -> Any:
        request = urllib.request.Request(
            self.admin_origin + path,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
            method="GET" if body is None else "POST",
        )
        with urllib.request.urlopen(request, timeout=30) as answer:
            return json.loads(answer.read())

    def requests(self) -> list[dict[str, Any]]:
        if self.in_process:
            return [asdict(entry) for entry in self.emulator.requests]
        try:
            return list(self._admin("/_emulator/requests"))
        except Exception:  # an API without the emulator's request log: nothing to witness
            return []

    def done_at(self) -> dict[str, float]:
        if self.in_process:
            return {
                g.id: g.created_at + g.timeline.queued_for + g.timeline.processing_for
                for g in self.emulator.generations
            }
        try:
            return {g["id"]: g["done_at"] for g in self._admin("/_emulator/generations")}
        except Exception:
            return {}

    def outcome(self, generation_id: str) -> str | None:
        if self.in_process:
            with contextlib.suppress(KeyError):
                return str(self.emulator.generation(generation_id).timeline.outcome)
        return None

    def script(self, item: plan.Item) -> None:
        """Script the item's completion time; the baseline's item of the same index finishes alike."""
        self.script_marker(item.marker, item.queued_for, item.processing_for, item.outcome)
        self.script_marker(item.baseline_marker, item.queued_for, item.processing_for, "completed")

    def script_marker(self, marker: str, queued_for: float, processing_for: float, outcome: str = "completed") -> None:
        """Generations whose prompt holds ``marker`` are queued, then processing, for these seconds."""
        timeline = {"queued_for": queued_for, "processing_for": processing_for, "outcome": outcome}
        if self.in_process:
            from airflow_provider_vidgen.testing.emulator import Timeline

            self.emulator.script_prompt(marker, Timeline(**timeline))
        else:
            with contextlib.suppress(Exception):
                self._admin("/_emulator/script-prompt", {"marker": marker, **timeline})

    def fault(self, **fault: Any) -> None:
        if self.in_process:
            self.emulator.add_fault(**fault)
        else:
            with contextlib.suppress(Exception):
                self._admin("/_emulator/fault", fault)

    def video_content(self) -> bytes | None:
        return self.emulator.video_content() if self.in_process else None


# -- the run ----------------------------------------------------------------------------------------


class Run:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.n = args.generations
        self.venv_bin = Path(sys.executable).parent
        self.run_dir = Path(tempfile.mkdtemp(prefix="vidgen-system-"))
        self.run_dir.chmod(0o755)  # postgres runs as an unprivileged user under it
        self.home = self.run_dir / "airflow"
        self.output_dir = self.run_dir / "videos"
        self.output_dir.mkdir()
        self.starts_dir = self.run_dir / "starts"  # one file per task-process start (system_test/plugins)
        self.starts_dir.mkdir()
        self.main_starts: dict[tuple[str, str, str, int], list[int]] = {}
        self.key = os.environ.get("VIDGEN_API_KEY") if args.api_url else "sk-system-" + secrets.token_hex(16)
        self.baseline_key = "sk-baseline-" + secrets.token_hex(16)
        self.ports = {name: free_port() for name in ("postgres", "redis", "airflow_api", "api", "downloads")}
        self.report: dict[str, Any] = {"generations": self.n, "deaths": [], "rules": {}, "timings": {}}
        self.failures: list[str] = []
        self.emulator: Any = None
        self.cluster: Cluster | None = None
        self.db: Any = None
        self.monitor_stop = threading.Event()
        self.monitor_lock = threading.Lock()
        self.trigger_seen: dict[int, set[int]] = defaultdict(set)  # trigger id -> triggerer job ids
        self.trigger_ti: dict[int, tuple[str, str, str, int]] = {}  # trigger id -> (dag, run, task, map)
        self.triggerer_cpu: dict[str, float] = {}
        self.triggerer_jobs: dict[str, int] = {}
        self.started = time.time()

    # -- environment ----------------------------------------------------------------------------

    def airflow_env(self, api_base: str) -> dict[str, str]:
        from cryptography.fernet import Fernet

        pg = f"airflow@127.0.0.1:{self.ports['postgres']}/airflow"
        api = f"http://127.0.0.1:{self.ports['airflow_api']}"
        http = urlsplit(api_base)
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("AIRFLOW", "VIDGEN")) and key not in ("PYTHONPATH",)
        }
        env.update(
            {
                "AIRFLOW_HOME": str(self.home),
                "PYTHONPATH": str(ROOT),
                "PATH": f"{self.venv_bin}:{env.get('PATH', '/usr/bin:/bin')}",
                "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
                "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "system_test" / "dags"),
                "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "system_test" / "plugins"),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__PARALLELISM": "64",
                "AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG": "500",
                "AIRFLOW__CORE__FERNET_KEY": Fernet.generate_key().decode(),
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{api}/execution/",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
                "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": "120",
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"postgresql+psycopg2://{pg}",
                "AIRFLOW__CELERY__BROKER_URL": f"redis://127.0.0.1:{self.ports['redis']}/0",
                "AIRFLOW__CELERY__RESULT_BACKEND": f"db+postgresql+psycopg2://{pg}",
                "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(self.args.worker_concurrency),
                "AIRFLOW__API__HOST": "127.0.0.1",
                "AIRFLOW__API__PORT": str(self.ports["airflow_api"]),
                "AIRFLOW__API__BASE_URL": api,
                "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(32),
                # Short heartbeat timeouts, so deaths are detected within the test.
                "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "20",
                "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "3",
                "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "2",
                "AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD": "10",
                "AIRFLOW_CONN_VIDGEN_DEFAULT": json.dumps(
                    {
                        "conn_type": "vidgen",
                        "host": api_base,
                        "password": self.key,
                        "extra": {"timeout": 90, "max_retries": 6, "retry_base_delay": 1, "retry_max_delay": 8},
                    }
                ),
                "AIRFLOW_CONN_VIDGEN_HTTP": json.dumps(
                    {
                        "conn_type": "http",
                        "host": http.hostname,
                        "port": http.port,
                        "schema": http.scheme,
                        "password": self.baseline_key if self.emulator is not None else self.key,
                    }
                ),
                "VIDGEN_SYSTEM_N": str(self.n),
                "VIDGEN_SYSTEM_OUTPUT": self.output_dir.as_uri(),
                "VIDGEN_SYSTEM_STARTS": str(self.starts_dir),
            }
        )
        return env

    def airflow(self, *argv: str, timeout: float = 300) -> str:
        assert self.cluster is not None
        done = subprocess.run(
            [str(self.venv_bin / "airflow"), *argv],
            env=self.cluster.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"airflow {' '.join(argv)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}")
        return done.stdout

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self.monitor_lock:
            if self.db is None:
                self.db = psycopg2.connect(
                    host="127.0.0.1", port=self.ports["postgres"], user="airflow", dbname="airflow"
                )
                self.db.autocommit = True
            with self.db.cursor() as cursor:
                cursor.execute(sql, params)
                return cursor.fetchall() if cursor.description else []

    # -- components -----------------------------------------------------------------------------

    def start_infrastructure(self) -> None:
        cluster = self.cluster
        assert cluster is not None
        pg_dir = self.run_dir / "postgres"
        pg_dir.mkdir()
        shutil.chown(pg_dir, "nobody", "nogroup")
        bindir = Path(self.args.pg_bindir)
        t0 = time.monotonic()
        initdb = cluster.start(
            "initdb",
            [
                str(bindir / "initdb"),
                "-D",
                str(pg_dir / "data"),
                "-U",
                "airflow",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-locale",
                "--no-sync",
            ],
            user="nobody",
            cwd=pg_dir,
        )
        if initdb.popen.wait(120) != 0:
            raise RuntimeError("initdb failed: " + initdb.log.read_text()[-2000:])
        cluster.procs.pop("initdb")  # done: not a component to watch
        cluster.start(
            "postgres",
            [
                str(bindir / "postgres"),
                "-D",
                str(pg_dir / "data"),
                "-p",
                str(self.ports["postgres"]),
                "-k",
                str(pg_dir),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "max_connections=300",
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
            ],
            user="nobody",
            cwd=pg_dir,
            stop_signal=signal.SIGINT,
        )
        redis_dir = self.run_dir / "redis"
        redis_dir.mkdir()
        cluster.start(
            "redis",
            [
                self.args.redis_server,
                "--port",
                str(self.ports["redis"]),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(redis_dir),
            ],
        )

        def pg_ready() -> bool:
            cluster.check_running("postgres")
            conn = psycopg2.connect(host="127.0.0.1", port=self.ports["postgres"], user="airflow", dbname="postgres")
            conn.autocommit = True
            with conn.cursor() as cursor:
                cursor.execute("SELECT 1 FROM pg_database WHERE datname = 'airflow'")
                if not cursor.fetchall():
                    cursor.execute("CREATE DATABASE airflow")
            conn.close()
            return True

        wait_for("PostgreSQL", pg_ready, 60)

        def redis_ready() -> bool:
            import redis

            cluster.check_running("redis")
            return bool(redis.Redis(host="127.0.0.1", port=self.ports["redis"]).ping())

        wait_for("Redis", redis_ready, 30)
        self.report["timings"]["postgres_redis_s"] = round(time.monotonic() - t0, 1)

    def start_airflow(self) -> None:
        cluster = self.cluster
        assert cluster is not None
        t0 = time.monotonic()
        log("airflow db migrate")
        self.airflow("db", "migrate", timeout=600)
        self.report["timings"]["db_migrate_s"] = round(time.monotonic() - t0, 1)
        af = str(self.venv_bin / "airflow")
        cluster.start("api-server", [af, "api-server", "--workers", "1"])
        cluster.start("scheduler", [af, "scheduler"])
        cluster.start("dag-processor", [af, "dag-processor"])
        for name in ("triggerer-1", "triggerer-2"):
            self.start_triggerer(name)
        for name in ("worker-1", "worker-2"):
            self.start_worker(name)
        api = f"http://127.0.0.1:{self.ports['airflow_api']}/api/v2/monitor/health"

        def healthy() -> bool:
            cluster.check_running()
            with urllib.request.urlopen(api, timeout=5) as answer:
                health = json.loads(answer.read())
            return all(
                (health.get(part) or {}).get("status") == "healthy"
                for part in ("metadatabase", "scheduler", "triggerer", "dag_processor")
            )

        wait_for("the Airflow components to report healthy", healthy, 240, 1)
        for dag_id in (DAG_ID, BASELINE_DAG_ID, STARTS_DAG_ID):
            wait_for(
                f"{dag_id} to be parsed",
                lambda d=dag_id: self.query("SELECT 1 FROM serialized_dag WHERE dag_id = %s", (d,)),
                240,
                1,
            )
        self.report["timings"]["airflow_up_s"] = round(time.monotonic() - t0, 1)

    def start_triggerer(self, name: str) -> None:
        assert self.cluster is not None
        known = {row[0] for row in self.query("SELECT id FROM job WHERE job_type = 'TriggererJob'")}
        self.cluster.start(name, [str(self.venv_bin / "airflow"), "triggerer", "--skip-serve-logs"])

        def new_job() -> int | None:
            self.cluster.check_running(name)
            rows = self.query(
                "SELECT id FROM job WHERE job_type = 'TriggererJob' AND state = 'running' ORDER BY id DESC"
            )
            fresh = [row[0] for row in rows if row[0] not in known]
            return fresh[0] if fresh else None

        self.triggerer_jobs[name] = wait_for(f"{name} to register its job", new_job, 180, 0.5)

    def start_worker(self, name: str) -> None:
        assert self.cluster is not None
        proc = self.cluster.start(
            name,
            [
                str(self.venv_bin / "airflow"),
                "celery",
                "worker",
                "--celery-hostname",
                f"{name}@localhost",
                "--concurrency",
                str(self.args.worker_concurrency),
                "--skip-serve-logs",
                "--without-mingle",
                "--without-gossip",
            ],
        )
        size = proc.log.stat().st_size if proc.log.exists() else 0

        def ready() -> bool:
            self.cluster.check_running(name)
            with open(proc.log, "rb") as text:
                text.seek(size)
                return b" ready." in text.read()

        wait_for(f"{name} to be ready", ready, 180, 0.5)

    # -- monitor --------------------------------------------------------------------------------

    def monitor(self) -> None:
        """Every 0.5 s: which triggerer holds which trigger, and each triggerer's CPU so far."""
        while not self.monitor_stop.wait(0.5):
            with contextlib.suppress(Exception):
                rows = self.query(
                    "SELECT t.id, t.triggerer_id, ti.dag_id, ti.run_id, ti.task_id, ti.map_index "
                    "FROM trigger t JOIN task_instance ti ON ti.trigger_id = t.id"
                )
                for trigger_id, triggerer_id, dag_id, run_id, task_id, map_index in rows:
                    self.trigger_ti[trigger_id] = (dag_id, run_id, task_id, map_index)
                    if triggerer_id is not None:
                        self.trigger_seen[trigger_id].add(triggerer_id)
            assert self.cluster is not None
            for name in ("triggerer-1", "triggerer-2"):
                proc = self.cluster.procs.get(name)
                if proc is not None and proc.popen.poll() is None:
                    key = f"{name}@{proc.pid}"
                    self.triggerer_cpu[key] = max(self.triggerer_cpu.get(key, 0.0), cpu_seconds(proc.tree()))

    def triggerer_cpu_total(self) -> float:
        return sum(self.triggerer_cpu.values())

    # -- DAG runs -------------------------------------------------------------------------------

    def trigger(self, dag_id: str, run_id: str) -> None:
        self.airflow("dags", "trigger", dag_id, "--run-id", run_id, "--logical-date", LOGICAL_DATE)

    def run_state(self, dag_id: str, run_id: str) -> str | None:
        rows = self.query("SELECT state FROM dag_run WHERE dag_id = %s AND run_id = %s", (dag_id, run_id))
        return rows[0][0] if rows else None

    def wait_run(self, dag_id: str, run_id: str, timeout: float) -> str:
        assert self.cluster is not None

        def finished() -> str | None:
            self.cluster.check_running()
            state = self.run_state(dag_id, run_id)
            return state if state in ("success", "failed") else None

        return str(wait_for(f"run {run_id} of {dag_id} to finish", finished, timeout, 1))

    def task_instances(self, dag_id: str, run_id: str) -> dict[tuple[str, int], dict[str, Any]]:
        rows = self.query(
            "SELECT task_id, map_index, state, try_number, start_date, end_date, pid FROM task_instance "
            "WHERE dag_id = %s AND run_id = %s",
            (dag_id, run_id),
        )
        return {
            (r[0], r[1]): {"state": r[2], "try_number": r[3], "start": r[4], "end": r[5], "pid": r[6]} for r in rows
        }

    def creates(self) -> list[dict[str, Any]]:
        return [r for r in self.api.requests() if r["endpoint"] in ("videos_create", "starvideos_create")]

    # -- chaos ----------------------------------------------------------------------------------

    def inject_transient_faults(self) -> None:
        for fault in (
            {"kind": "status", "status": 429, "retry_after": "2", "endpoint": "result", "times": 4},
            {"kind": "status", "status": 503, "endpoint": "result", "times": 4},
            {"kind": "drop", "endpoint": "result", "times": 3},
            {"kind": "status", "status": 502, "text": "Bad Gateway", "endpoint": "result", "times": 2},
            {"kind": "drop", "endpoint": "download", "times": 2},
            {"kind": "status", "status": 503, "endpoint": "download", "times": 2},
        ):
            self.api.fault(**fault)

    def kill_worker(self, name: str) -> None:
        assert self.cluster is not None
        proc = self.cluster.procs[name]
        holds_wanted = self.api.in_process
        if holds_wanted:
            creates, reads = self.args.held_creates, self.args.held_reads
            self.emulator.arm_holds(proc.pid, creates=creates, first_reads=reads)
            log(f"{name}: holding its next {creates} creates and the first read of {reads} more generations")

            def holds_in_place() -> bool:
                held = self.emulator.held
                kinds = [h["kind"] for h in held]
                if kinds.count("create") >= creates and kinds.count("first_read") >= reads:
                    return True
                # do not let a held create outlive the client's read timeout
                return bool(held) and time.time() - held[0]["time"] > 45

            with contextlib.suppress(TimeoutError):
                wait_for(f"{name} to be in the middle of creates", holds_in_place, 240, 0.2)
        tree = proc.tree()
        running = self.query(
            "SELECT task_id, map_index, try_number, pid FROM task_instance WHERE dag_id = %s AND run_id = %s "
            "AND state = 'running'",
            (DAG_ID, RUN_ID),
        )
        on_worker = [(r[0], r[1], r[2]) for r in running if r[3] in tree]
        held = list(self.emulator.held) if holds_wanted else []
        log(f"kill -9 {name}: {len(tree)} processes, running tasks {on_worker}, held requests {len(held)}")
        killed = self.cluster.kill9(name)
        if holds_wanted:
            self.emulator.disarm_holds()
        self.report["deaths"].append(
            {
                "kind": "celery worker",
                "name": name,
                "time": time.time(),
                "pids_killed": len(killed),
                "all_gone": True,
                "running_tasks": [list(t) for t in on_worker],
                "held_requests": held,
            }
        )
        self.start_worker(name)
        log(f"{name} restarted")

    def kill_triggerer(self, name: str) -> None:
        assert self.cluster is not None
        job = self.triggerer_jobs[name]
        self.killed_triggerers = getattr(self, "killed_triggerers", set()) | {job}

        def waits_on_it() -> list[tuple[Any, ...]]:
            rows = self.query(
                "SELECT t.id, ti.task_id, ti.map_index FROM trigger t JOIN task_instance ti ON ti.trigger_id = t.id "
                "WHERE t.triggerer_id = %s AND ti.dag_id = %s",
                (job, DAG_ID),
            )
            return rows if len(rows) >= min(3, max(1, self.n // 10)) else []

        rows = wait_for(f"{name} to hold waits", waits_on_it, 600, 0.5)
        log(f"kill -9 {name} (job {job}) holding {len(rows)} triggers")
        killed = self.cluster.kill9(name)
        self.report["deaths"].append(
            {
                "kind": "triggerer",
                "name": name,
                "job_id": job,
                "time": time.time(),
                "pids_killed": len(killed),
                "triggers": [{"trigger_id": r[0], "task_id": r[1], "map_index": r[2]} for r in rows],
            }
        )

    def outage(self) -> None:
        if not self.api.in_process:
            log("API outage skipped: the API is not the bundled emulator")
            return
        in_flight = self.query(
            "SELECT task_id, map_index, state FROM task_instance WHERE dag_id = %s AND run_id = %s "
            "AND state IN ('running', 'deferred', 'queued', 'scheduled', 'up_for_retry')",
            (DAG_ID, RUN_ID),
        )
        log(f"API outage: refusing connections for {OUTAGE_SECONDS}s ({len(in_flight)} tasks in flight)")
        self.emulator.close_api()
        start = time.time()
        self.monitor_stop.wait(OUTAGE_SECONDS)  # the outage itself lasts this long
        self.emulator.open_api()
        self.report["deaths"].append(
            {
                "kind": "api outage",
                "time": start,
                "seconds": round(time.time() - start, 1),
                "tasks_in_flight": [list(r) for r in in_flight],
            }
        )
        log("API back")

    # -- the scenario ---------------------------------------------------------------------------

    def main_run(self) -> None:
        for item in plan.items(self.n):
            self.api.script(item)
        self.inject_transient_faults()
        creates_before = len(self.creates())
        t0 = time.time()
        cpu0 = self.triggerer_cpu_total()
        self.trigger(DAG_ID, RUN_ID)
        log(f"triggered {DAG_ID} ({self.n} generations)")
        self.kill_worker("worker-1")
        self.kill_triggerer("triggerer-1")
        self.outage()
        state = self.wait_run(DAG_ID, RUN_ID, 900 + 12 * self.n)
        wall = time.time() - t0
        self.monitor_stop.wait(1)  # one more monitor sample
        log(f"{DAG_ID} finished: {state} in {wall:.0f}s")
        self.report["timings"]["main_run_s"] = round(wall, 1)
        self.report["main_run_state"] = state
        self.report["main_creates"] = len(self.creates()) - creates_before
        self.phase_cpu = {"vidgen": self.triggerer_cpu_total() - cpu0}
        self.main_tis = self.task_instances(DAG_ID, RUN_ID)
        self.main_starts = self.task_starts()  # before the re-run adds its own
        self.main_requests = self.api.requests()
        # The killed triggerer is redeployed: the re-run and the baseline have two triggerers again.
        self.start_triggerer("triggerer-1")
        log(f"triggerer-1 redeployed (job {self.triggerer_jobs['triggerer-1']})")

    def rerun(self) -> None:
        before = len(self.creates())
        done = subprocess.run(
            [sys.executable, "-m", "system_test.clear", DAG_ID, RUN_ID, *RERUN_TASKS],
            env=self.cluster.env if self.cluster else None,
            capture_output=True,
            text=True,
            timeout=300,
            check=True,
            cwd=ROOT,
        )
        cleared = int(done.stdout.strip().splitlines()[-1])
        log(f"re-run of the same logical date: cleared {cleared} successful task instances")
        t0 = time.time()

        def rerun_done() -> bool:
            tis = self.task_instances(DAG_ID, RUN_ID)
            busy = [
                k for k, ti in tis.items() if ti["state"] not in ("success", "failed", "skipped", "upstream_failed")
            ]
            return not busy and self.run_state(DAG_ID, RUN_ID) in ("success", "failed")

        wait_for("the re-run to finish", rerun_done, 600 + 3 * self.n, 1)
        after = len(self.creates())
        rerun_tis = self.task_instances(DAG_ID, RUN_ID)
        self.report["rerun"] = {
            "cleared": cleared,
            "creates": after - before,
            "seconds": round(time.time() - t0, 1),
            "not_success": sorted(
                f"{task}[{mi}]"
                for (task, mi), ti in rerun_tis.items()
                if task in RERUN_TASKS
                and ti["state"] != "success"
                and self.main_tis.get((task, mi), {}).get("state") == "success"
            ),
        }
        if after != before:
            self.failures.append(f"re-run with if_output_exists='skip' created {after - before} generations")
        if self.report["rerun"]["not_success"]:
            self.failures.append(f"re-run: tasks did not succeed again: {self.report['rerun']['not_success']}")

    def shapes(self) -> None:
        """One wait of each shape, without faults: the tries and worker task-process starts of each task."""
        for marker in plan.STARTS_MARKERS.values():
            self.api.script_marker(marker, *plan.STARTS_GENERATION)
        t0 = time.time()
        self.trigger(STARTS_DAG_ID, STARTS_RUN_ID)
        log(f"triggered {STARTS_DAG_ID} (one wait of each shape)")
        state = self.wait_run(STARTS_DAG_ID, STARTS_RUN_ID, 300)
        log(f"{STARTS_DAG_ID} finished: {state} in {time.time() - t0:.0f}s")
        tis = self.task_instances(STARTS_DAG_ID, STARTS_RUN_ID)
        starts = self.task_starts()
        expected = EXPECTED_STARTS[self.args.expect_starts]
        tasks = {}
        for task_id, want in expected.items():
            ti = tis.get((task_id, -1), {})
            got = starts.get((STARTS_DAG_ID, STARTS_RUN_ID, task_id, -1), [])
            tasks[task_id] = {
                "state": ti.get("state"),
                "tries": ti.get("try_number"),
                "task_process_starts": len(got),
                "expected_starts": want,
            }
            if ti.get("state") != "success" or ti.get("try_number") != 1:
                self.failures.append(f"{STARTS_DAG_ID}: {task_id} ended {ti.get('state')}, try {ti.get('try_number')}")
            if len(got) != want:
                self.failures.append(
                    f"{STARTS_DAG_ID}: {task_id} started a task process {len(got)} times, expected {want} "
                    f"(--expect-starts {self.args.expect_starts})"
                )
        self.report["task_process_starts"] = {"expected": self.args.expect_starts, "tasks": tasks}
        self.check_shape_xcoms()
        self.report["timings"]["starts_run_s"] = round(time.time() - t0, 1)

    def check_shape_xcoms(self) -> None:
        """Each wait's XComs are stored as a worker stores them, wherever the wait ended (a worker pulls
        them back as they were pushed: a JSON string stored as JSON text would come back quoted)."""
        rows = self.query(
            "SELECT task_id, key, value FROM xcom WHERE dag_id = %s AND run_id = %s", (STARTS_DAG_ID, STARTS_RUN_ID)
        )
        xcoms = {(task_id, key): value for task_id, key, value in rows}
        ids = {task_id: xcoms.get((task_id, "generation_id")) for task_id in ("create_wait", "create_save")}
        expected = {
            ("create_wait", "return_value"): lambda v: isinstance(v, str) and v == ids["create_wait"],
            ("create_wait", "video_url"): lambda v: isinstance(v, str) and v.startswith("http"),
            ("create_wait", "actual_duration"): lambda v: isinstance(v, (int, float)),
            ("create_save", "return_value"): lambda v: isinstance(v, str) and v == ids["create_save"],
            ("sensor", "return_value"): lambda v: isinstance(v, dict) and v.get("status") == "completed",
        }
        wrong = {
            f"{task}.{key}": xcoms.get((task, key))
            for (task, key), ok in expected.items()
            if not ok(xcoms.get((task, key)))
        }
        self.report["task_process_starts"]["xcoms_as_a_worker_stores_them"] = not wrong
        if wrong:
            self.failures.append(f"{STARTS_DAG_ID}: XComs not stored as a worker stores them: {wrong}")

    def baseline(self) -> None:
        cpu0 = self.triggerer_cpu_total()
        t0 = time.time()
        self.trigger(BASELINE_DAG_ID, BASELINE_RUN_ID)
        log(f"triggered {BASELINE_DAG_ID} ({self.n} HttpOperator + HttpSensor(deferrable=True))")
        state = self.wait_run(BASELINE_DAG_ID, BASELINE_RUN_ID, 900 + 12 * self.n)
        wall = time.time() - t0
        self.monitor_stop.wait(1)
        log(f"{BASELINE_DAG_ID} finished: {state} in {wall:.0f}s")
        self.report["timings"]["baseline_run_s"] = round(wall, 1)
        self.report["baseline_run_state"] = state
        self.phase_cpu["baseline"] = self.triggerer_cpu_total() - cpu0
        self.baseline_wall = wall

    # -- witness --------------------------------------------------------------------------------

    def task_logs(self, dag_id: str, task_id: str, map_index: int) -> list[Path]:
        """The worker's log of each try (not the triggerer's ``.trigger.<job>.log`` beside it)."""
        folder = self.home / "logs" / f"dag_id={dag_id}" / f"run_id={RUN_ID if dag_id == DAG_ID else BASELINE_RUN_ID}"
        folder = folder / f"task_id={task_id}" / f"map_index={map_index}"
        return sorted(p for p in folder.glob("attempt=*.log") if re.fullmatch(r"attempt=\d+\.log", p.name))

    def trigger_jobs_of(self, task_id: str, map_index: int) -> set[int]:
        """Triggerer job ids that ran a trigger of this task (they write ``attempt=N.log.trigger.<job>.log``)."""
        folder = self.home / "logs" / f"dag_id={DAG_ID}" / f"run_id={RUN_ID}" / f"task_id={task_id}"
        return {
            int(found.group(1))
            for p in (folder / f"map_index={map_index}").glob("attempt=*.log.trigger.*.log")
            if (found := re.search(r"\.trigger\.(\d+)\.log$", p.name))
        }

    def task_starts(self) -> dict[tuple[str, str, str, int], list[int]]:
        """(dag, run, task, map index) -> the try number of each start of its task process so far (a try's
        first start and each resume after a deferral), as the listener in ``system_test/plugins`` recorded them."""
        starts: dict[tuple[str, str, str, int], list[int]] = defaultdict(list)
        for path in self.starts_dir.glob("*.json"):
            with contextlib.suppress(OSError, ValueError, KeyError):
                record = json.loads(path.read_text())
                key = (record["dag_id"], record["run_id"], record["task_id"], int(record["map_index"]))
                starts[key].append(int(record["try_number"]))
        return starts

    def process_starts(self, dag_id: str, task_id: str, map_index: int) -> int:
        """Task-process starts of one task instance: of the main run (not its re-run), or of the baseline run."""
        if dag_id == DAG_ID:
            return len(self.main_starts.get((DAG_ID, RUN_ID, task_id, map_index), []))
        return len(self.task_starts().get((dag_id, BASELINE_RUN_ID, task_id, map_index), []))

    def witness(self) -> None:
        requests = self.api.requests()
        done_at = self.api.done_at()
        content = self.api.video_content()
        expected_sha = hashlib.sha256(content).hexdigest() if content is not None else None
        items = plan.items(self.n)
        markers = {item.marker: item for item in items}
        creates_of: dict[int, list[str]] = defaultdict(list)
        for request in requests:
            if request["endpoint"] in ("videos_create", "starvideos_create") and isinstance(request["body"], dict):
                found = re.search(r"\[i\d{4}\]", str(request["body"].get("prompt", "")))
                if found and request.get("generation_id"):
                    creates_of[markers[found.group(0)].index].append(request["generation_id"])
        reads: dict[str, int] = defaultdict(int)
        downloads_ok: dict[str, int] = defaultdict(int)
        for request in requests:
            if request["endpoint"] == "result" and request.get("generation_id"):
                reads[request["generation_id"]] += 1
            if request["endpoint"] == "download" and request.get("status") == 200:
                downloads_ok[request.get("generation_id")] += 1
        held_creates = {
            h["generation_id"]
            for d in self.report["deaths"]
            if d["kind"] == "celery worker"
            for h in d["held_requests"]
            if h["kind"] == "create"
        }
        tis = self.main_tis
        rows = []
        for item in items:
            ti = tis.get((item.task_id, item.map_index), {})
            ids = creates_of.get(item.index, [])
            row: dict[str, Any] = {
                "item": item.index,
                "task": item.task_id,
                "map_index": item.map_index,
                "state": ti.get("state"),
                "tries": ti.get("try_number"),
                "generation_ids": ids,
                # an API that cannot be scripted fails nothing on purpose
                "expected": "failed" if item.outcome == "failed" and (self.api.in_process or requests) else "success",
            }
            # R1: a second create for the same item only after a failed generation
            for earlier in ids[:-1]:
                if self.api.outcome(earlier) != "failed":
                    self.failures.append(
                        f"item {item.index} ({item.task_id}[{item.map_index}]): created again after "
                        f"{earlier} ({self.api.outcome(earlier)}) - a duplicate, billed generation"
                    )
            unknown = [gid for gid in ids if gid in held_creates]
            if unknown:
                row["create_outcome_unknown_by_kill"] = unknown
                text = "".join(
                    p.read_text(errors="replace") for p in self.task_logs(DAG_ID, item.task_id, item.map_index)
                )
                row["outcome_unknown_error"] = "VidgenCreateOutcomeUnknownError" in text
                if ti.get("state") != "failed" or not row["outcome_unknown_error"]:
                    self.failures.append(
                        f"item {item.index}: its create was in flight when the worker was killed; the task must fail "
                        f"with VidgenCreateOutcomeUnknownError (state {ti.get('state')}, error logged: "
                        f"{row['outcome_unknown_error']})"
                    )
                row["expected"] = "failed"
            elif row["state"] != row["expected"]:
                self.failures.append(f"item {item.index} ({item.task_id}[{item.map_index}]) ended {row['state']}")
            # R2: the saved file
            saver = plan.SAVED_BY.get(item.task_id)
            if saver:
                path = self.output_dir / DS / saver / f"{item.map_index}.mp4"
                row["uri"] = path.as_uri()
                saver_state = tis.get((saver, item.map_index), {}).get("state")
                if path.exists():
                    data = path.read_bytes()
                    row["bytes"] = len(data)
                    row["sha256"] = hashlib.sha256(data).hexdigest()
                    row["byte_exact"] = expected_sha is None or row["sha256"] == expected_sha
                    row["served_downloads"] = downloads_ok.get(ids[-1] if ids else "", 0)
                    if not row["byte_exact"]:
                        self.failures.append(f"item {item.index}: {path.name} differs from the bytes the API served")
                    if content is not None and row["served_downloads"] == 0:
                        self.failures.append(f"item {item.index}: a file exists but the API never served its video")
                elif saver_state == "success":
                    self.failures.append(f"item {item.index}: {saver} succeeded but {path} does not exist")
            row["result_reads"] = sum(reads.get(gid, 0) for gid in ids)
            row["process_starts"] = sum(
                self.process_starts(DAG_ID, task_id, item.map_index)
                for task_id in ((item.task_id, "watch", "save") if item.task_id == "submit" else (item.task_id,))
            )
            finisher = "watch" if item.task_id == "submit" else item.task_id
            end = tis.get((finisher, item.map_index), {}).get("end")
            if ids and end is not None and row["state"] == "success" and ids[-1] in done_at:
                row["detection_lag_s"] = round(end.timestamp() - done_at[ids[-1]], 1)
            rows.append(row)
        for stray in sorted(p for p in self.output_dir.rglob("*") if p.is_file()):
            if stray.name.endswith(".part") or stray.name.startswith("."):
                self.failures.append(f"partial file left behind: {stray.relative_to(self.output_dir)}")
            elif expected_sha is not None and hashlib.sha256(stray.read_bytes()).hexdigest() != expected_sha:
                self.failures.append(f"file with wrong content: {stray.relative_to(self.output_dir)}")
        self.report["items"] = rows
        needed = sum(1 for item in items if item.outcome == "completed") + sum(
            2 for item in items if item.outcome == "failed"
        )
        states: dict[str, int] = defaultdict(int)
        for ti in tis.values():
            states[str(ti["state"])] += 1
        self.report["totals"] = {
            "creates_at_api": sum(len(v) for v in creates_of.values()),
            "generations_needed": needed,
            "task_instances_by_state": dict(states),
        }
        self.check_deaths(rows)
        self.check_secrets()
        self.figures(rows, requests, done_at)

    def check_deaths(self, rows: list[dict[str, Any]]) -> None:
        by_task = {(r["task"], r["map_index"]): r for r in rows}
        final = dict(self.main_tis)
        for death in self.report["deaths"]:
            if death["kind"] == "triggerer":
                other = {job for name, job in self.triggerer_jobs.items() if name != death["name"]}
                # (the redeployed triggerer's new job started after the main run had ended)
                outcomes = []
                for trig in death["triggers"]:
                    ti = final.get((trig["task_id"], trig["map_index"]), {})
                    seen = self.trigger_seen.get(trig["trigger_id"], set())
                    ran_on = self.trigger_jobs_of(trig["task_id"], trig["map_index"])
                    moved = bool((seen | ran_on) & other)
                    ended = ti.get("state") in ("success", "failed")
                    outcomes.append(
                        {
                            **trig,
                            "final_state": ti.get("state"),
                            "triggerer_jobs_that_ran_it": sorted(ran_on | seen),
                            "ended_on_other_triggerer": moved,
                        }
                    )
                    if not ended:
                        self.failures.append(f"trigger {trig['trigger_id']} of a killed triggerer never ended")
                    elif not moved:
                        self.failures.append(
                            f"trigger {trig['trigger_id']} ({trig['task_id']}[{trig['map_index']}]) of the killed "
                            f"triggerer was not seen on the other one"
                        )
                death["outcomes"] = outcomes
            elif death["kind"] == "celery worker":
                hit = {(t[0], t[1]) for t in death["running_tasks"]}
                for held in death["held_requests"]:
                    for row in rows:
                        if held["generation_id"] in row["generation_ids"]:
                            hit.add((row["task"], row["map_index"]))
                death["outcomes"] = [
                    {
                        "task_id": task,
                        "map_index": mi,
                        "final_state": final.get((task, mi), {}).get("state"),
                        "tries": final.get((task, mi), {}).get("try_number"),
                        "generation_ids": by_task.get((task, mi), {}).get("generation_ids"),
                    }
                    for task, mi in sorted(hit)
                ]
            elif death["kind"] == "api outage":
                death["outcomes"] = [
                    {"task_id": t, "map_index": mi, "final_state": final.get((t, mi), {}).get("state")}
                    for t, mi, _ in death["tasks_in_flight"]
                ]

    def check_secrets(self) -> None:
        dump = self.run_dir / "postgres-dump.sql"
        subprocess.run(
            [
                str(Path(self.args.pg_bindir) / "pg_dump"),
                "-h",
                "127.0.0.1",
                "-p",
                str(self.ports["postgres"]),
                "-U",
                "airflow",
                "-f",
                str(dump),
                "airflow",
            ],
            check=True,
            timeout=300,
        )
        places = [dump, *sorted(p for p in (self.home / "logs").rglob("*") if p.is_file())]
        places += sorted(p for p in (self.run_dir / "components").glob("*.log"))
        found: dict[str, list[str]] = {"provider_key": [], "baseline_key": []}
        signed_urls: list[str] = []
        for path in places:
            data = path.read_bytes()
            if path != dump and SIGNED_VIDEO_URL.search(data):  # XCom holds it (the dump), no log may
                signed_urls.append(str(path.relative_to(self.run_dir)))
            if self.key and self.key.encode() in data:
                found["provider_key"].append(str(path.relative_to(self.run_dir)))
            if self.baseline_key.encode() in data:
                found["baseline_key"].append(str(path.relative_to(self.run_dir)))
        tables = []
        if self.baseline_key.encode() in dump.read_bytes():
            copy = None
            for line in dump.read_text(errors="replace").splitlines():
                if line.startswith("COPY "):
                    copy = line.split()[1]
                elif copy and self.baseline_key in line and copy not in tables:
                    tables.append(copy)
        self.report["secrets"] = {
            "files_searched": len(places),
            "provider_key_found_in": found["provider_key"],
            "baseline_key_found_in": found["baseline_key"][:20],
            "baseline_key_tables": tables,
            "signed_video_url_found_in": signed_urls,
        }
        if signed_urls:
            self.failures.append(f"a signed video URL was found in: {signed_urls[:10]}")
        if found["provider_key"]:
            self.failures.append(f"the API key was found in: {found['provider_key'][:10]}")

    def figures(self, rows: list[dict[str, Any]], requests: list[dict[str, Any]], done_at: dict[str, float]) -> None:
        waited = [r for r in rows if r["state"] == "success"]
        lags = [r["detection_lag_s"] for r in waited if "detection_lag_s" in r]
        completed_waits = sum(
            1 for trigger, (dag, run, _, _) in self.trigger_ti.items() if dag == DAG_ID and run == RUN_ID
        )

        def summary(starts: list[int], reads: list[int], lag: list[float], cpu: float, waits: int, wall: float):
            return {
                "videos": len(starts),
                "task_process_starts_per_video": round(statistics.mean(starts), 2) if starts else None,
                "api_result_reads_per_video": round(statistics.mean(reads), 2) if reads else None,
                "detection_lag_p50_s": round(statistics.median(lag), 1) if lag else None,
                "detection_lag_max_s": round(max(lag), 1) if lag else None,
                "triggerer_cpu_s_per_wait": round(cpu / waits, 4) if waits else None,
                "trigger_waits": waits,
                "wall_s": round(wall, 1),
            }

        figures = {
            "vidgen": summary(
                [r["process_starts"] for r in waited],
                [r["result_reads"] for r in waited],
                lags,
                self.phase_cpu["vidgen"],
                completed_waits,
                self.report["timings"]["main_run_s"],
            )
        }
        if "baseline" in self.phase_cpu:
            tis = self.task_instances(BASELINE_DAG_ID, BASELINE_RUN_ID)
            gen_of: dict[int, str] = {}
            for request in requests:
                body = request.get("body")
                if request["endpoint"] == "videos_create" and isinstance(body, dict):
                    found = re.search(r"\[b(\d{4})\]", str(body.get("prompt", "")))
                    if found and request.get("generation_id"):
                        gen_of[int(found.group(1))] = request["generation_id"]
            reads: dict[str, int] = defaultdict(int)
            for request in requests:
                if request["endpoint"] == "result" and request.get("generation_id"):
                    reads[request["generation_id"]] += 1
            starts, base_reads, base_lag = [], [], []
            for index in range(self.n):
                wait = tis.get(("wait", index), {})
                if wait.get("state") != "success" or index not in gen_of:
                    continue
                gid = gen_of[index]
                starts.append(
                    self.process_starts(BASELINE_DAG_ID, "create", index)
                    + self.process_starts(BASELINE_DAG_ID, "wait", index)
                )
                base_reads.append(reads.get(gid, 0))
                if wait.get("end") is not None and gid in done_at:
                    base_lag.append(wait["end"].timestamp() - done_at[gid])
            base_waits = sum(1 for (dag, _, _, _) in self.trigger_ti.values() if dag == BASELINE_DAG_ID)
            figures["baseline"] = summary(
                starts, base_reads, base_lag, self.phase_cpu["baseline"], base_waits, self.baseline_wall
            )
            if figures["baseline"]["videos"] != self.n:
                self.failures.append(f"baseline: only {figures['baseline']['videos']} of {self.n} waits succeeded")
        self.report["figures"] = figures

    # -- report ---------------------------------------------------------------------------------

    def print_report(self) -> None:
        rows = self.report.get("items", [])
        if rows:
            print()
            print(
                f"{'item':>5} {'task':<12}{'map':>4} {'state':<8}{'tries':>6} {'creates':<44}{'bytes':>7} {'exact':<6}"
            )
            for r in rows:
                exact = "" if "byte_exact" not in r else ("yes" if r["byte_exact"] else "NO")
                ids = ",".join(r["generation_ids"])[:43]
                print(
                    f"{r['item']:>5} {r['task']:<12}{r['map_index']:>4} {r['state']!s:<8}{r['tries']!s:>6} "
                    f"{ids:<44}{r.get('bytes', '')!s:>7} {exact:<6}"
                )
        totals = self.report.get("totals")
        if totals:
            print(
                f"\ncreates at the API: {totals['creates_at_api']} (generations needed: {totals['generations_needed']})"
            )
            print(f"task instances by state: {totals['task_instances_by_state']}")
        for death in self.report["deaths"]:
            print(f"\n{death['kind']} {death.get('name', '')}:")
            for outcome in death.get("outcomes", []):
                print(f"    {outcome}")
        if "rerun" in self.report:
            print(f"\nre-run: {self.report['rerun']}")
        shapes = self.report.get("task_process_starts")
        if shapes:
            print(f"\n{'wait shape (' + STARTS_DAG_ID + ')':<40}{'state':<9}{'tries':>6}{'starts':>8}{'expected':>10}")
            for task_id, row in shapes["tasks"].items():
                print(
                    f"{task_id:<40}{row['state']!s:<9}{row['tries']!s:>6}{row['task_process_starts']:>8}"
                    f"{row['expected_starts']:>10}"
                )
        if "secrets" in self.report:
            print(f"\nsecrets: {self.report['secrets']}")
        figures = self.report.get("figures")
        if figures:
            names = list(figures)
            print(f"\n{'per video':<34}" + "".join(f"{name:>14}" for name in names))
            for key in figures[names[0]]:
                print(f"{key:<34}" + "".join(f"{figures[name].get(key)!s:>14}" for name in names))
        print(f"\ntimings: {self.report['timings']}")
        print("\nRULES: " + ("all held" if not self.failures else "BROKEN"))
        for failure in self.failures:
            print(f"  - {failure}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/system-test.sh", description=__doc__.split("\n")[0])
    parser.add_argument("--generations", type=int, default=200, help="N mapped generations (default 200)")
    parser.add_argument("--api-url", help="API base URL (key in VIDGEN_API_KEY) instead of the bundled emulator")
    parser.add_argument("--report", type=Path, help="write the JSON report here")
    parser.add_argument("--keep", action="store_true", help="keep the run folder for inspection")
    parser.add_argument(
        "--expect-starts",
        choices=sorted(EXPECTED_STARTS),
        default="after",
        help="worker task-process starts expected of each wait shape (default: after)",
    )
    parser.add_argument("--skip-baseline", action="store_true", help="do not run the HTTP-provider baseline")
    parser.add_argument("--worker-concurrency", type=int, default=4)
    parser.add_argument("--held-creates", type=int, default=2, help="creates in flight when the worker dies")
    parser.add_argument("--held-reads", type=int, default=2, help="recorded ids not yet deferred when it dies")
    parser.add_argument("--pg-bindir", default="/usr/lib/postgresql/15/bin")
    parser.add_argument("--redis-server", default=shutil.which("redis-server") or "redis-server")
    args = parser.parse_args(argv)
    if args.generations < 20:
        parser.error("--generations must be at least 20 (every kind of item appears from 20 on)")
    if args.api_url and not os.environ.get("VIDGEN_API_KEY"):
        parser.error("--api-url needs the key in VIDGEN_API_KEY")
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    run = Run(args)
    log(f"run folder: {run.run_dir}")
    monitor = threading.Thread(target=run.monitor, name="monitor", daemon=True)
    exit_code = 1
    try:
        if args.api_url:
            split = urlsplit(args.api_url)
            run.api = Api(None, f"{split.scheme}://{split.netloc}")
            api_base = args.api_url
        else:
            from system_test.api import SystemEmulator

            run.emulator = SystemEmulator(
                api_key=run.key,
                baseline_key=run.baseline_key,
                port=run.ports["api"],
                download_port=run.ports["downloads"],
            ).start()
            run.api = Api(run.emulator, None)
            api_base = run.emulator.base_url
        run.cluster = Cluster(run.run_dir, run.airflow_env(api_base))
        run.start_infrastructure()
        run.start_airflow()
        monitor.start()
        run.main_run()
        run.rerun()
        run.shapes()
        if not args.skip_baseline:
            run.baseline()
        run.report["timings"]["total_s"] = round(time.time() - run.started, 1)
        run.witness()
        exit_code = 1 if run.failures else 0
    except (Exception, Interrupted) as err:
        run.failures.append(f"the run stopped: {type(err).__name__}: {err}")
        log(f"ERROR: {err}")
    finally:
        run.monitor_stop.set()
        if run.cluster is not None:
            log("stopping every process")
            run.cluster.stop_all(
                order=[
                    "worker-1",
                    "worker-2",
                    "triggerer-1",
                    "triggerer-2",
                    "scheduler",
                    "dag-processor",
                    "api-server",
                    "redis",
                    "postgres",
                ]
            )
        if run.emulator is not None:
            run.emulator.stop()
        run.report["rules"] = {"held": not run.failures, "broken": run.failures}
        run.print_report()
        if args.report:
            args.report.parent.mkdir(parents=True, exist_ok=True)
            args.report.write_text(json.dumps(run.report, indent=2, default=str) + "\n")
            log(f"report: {args.report}")
        if args.keep:
            log(f"kept the run folder: {run.run_dir}")
        else:
            shutil.rmtree(run.run_dir, ignore_errors=True)
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
