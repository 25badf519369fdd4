"""The system test's own helpers (system_test/): process-tree kills, socket owners, the item plan."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from system_test import plan
from system_test.cluster import alive, descendants, kill_tree, socket_owner, wait_for

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


def test_kill_tree_kills_grandchildren_not_only_the_parent():
    # A parent with two children, as a Celery worker with task processes.
    parent = subprocess.Popen(["bash", "-c", "sleep 300 & sleep 300 & wait"], start_new_session=True)
    try:

        def whole_tree() -> set[int] | None:
            tree = descendants(parent.pid)
            return tree if len(tree) == 3 else None

        tree = wait_for("both children", whole_tree, 30, 0.05)
        killed = kill_tree(parent.pid, sid=parent.pid)
        assert tree <= killed
        wait_for("the whole tree to be gone", lambda: not any(alive(pid) for pid in tree), 30, 0.05)
    finally:
        parent.kill()
        parent.wait(10)


def test_socket_owner_names_the_process_holding_the_client_end():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        with socket.create_connection(server.getsockname()) as client:
            assert socket_owner(client.getsockname()[1]) == os.getpid()


def test_plan_has_every_kind_of_item_with_contiguous_map_indexes():
    grouped = plan.by_task(40)
    assert all(grouped[task] for task in plan.TASKS)
    for task, items in grouped.items():
        assert [item.map_index for item in items] == list(range(len(items))), task
    assert all(10 <= item.queued_for + item.processing_for <= 90 for item in plan.items(40))
    assert plan.items(40) == plan.items(40)  # seeded: the DAG file and the runner agree
    markers = [item.marker for item in plan.items(200)]
    assert not any(a != b and a in b for a in markers for b in markers)


def test_task_start_listener_writes_one_record_per_start(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import json
    from types import SimpleNamespace

    from system_test.plugins.task_starts import TaskStartsPlugin, record_start

    ti = SimpleNamespace(dag_id="d", run_id="r", task_id="t", map_index=-1, try_number=1)
    first = record_start(ti, str(tmp_path))
    second = record_start(ti, str(tmp_path))
    assert first is not None
    assert second is not None
    assert first != second
    assert sorted(p.suffix for p in tmp_path.iterdir()) == [".json", ".json"]  # no partial file left
    assert json.loads(first.read_text())["task_id"] == "t"
    assert record_start(ti, None) is None or "VIDGEN_SYSTEM_STARTS" in os.environ
    assert TaskStartsPlugin.listeners  # registered as a listener
