"""What the system DAG runs, derived from N alone, so the DAG file and the runner agree.

Item ``i`` (0 <= i < N) is one generation of the system DAG:

- ``i % 20 == 7``: a Videos generation the API fails (task ``videos_fail``, one retry that resubmits);
- ``i % 10 == 3``: created without waiting (``submit``), waited on by a deferrable sensor (``watch``)
  and saved by ``VideoDownloadOperator`` (``save``);
- otherwise, even ``i``: ``videos``, odd ``i``: ``starvideos``; deferrable, with ``output_path``.

Each prompt carries the marker ``[iNNNN]``; the emulator is scripted per marker with a completion
time spread over 10-90 s (seeded, so a run is repeatable).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

TASKS = ("videos", "starvideos", "videos_fail", "submit")
#: DAG ``vidgen_system_starts`` (one task per shape of wait): the marker in each prompt, by task id.
STARTS_MARKERS = {"submit": "[s-sensor]", "create_wait": "[s-create-wait]", "create_save": "[s-create-save]"}
#: How long each generation of ``vidgen_system_starts`` takes: seconds queued, then processing.
STARTS_GENERATION = (3.0, 12.0)
#: Tasks whose saved file the run checks, and the task that saved the file of each.
SAVED_BY = {"videos": "videos", "starvideos": "starvideos", "submit": "save"}


@dataclass(frozen=True)
class Item:
    index: int
    task_id: str
    map_index: int
    prompt: str
    queued_for: float
    processing_for: float
    outcome: str

    @property
    def marker(self) -> str:
        return f"[i{self.index:04d}]"

    @property
    def baseline_marker(self) -> str:
        """The marker of the baseline DAG's generation of the same index (same completion time)."""
        return f"[b{self.index:04d}]"


def task_of(index: int) -> str:
    if index % 20 == 7:
        return "videos_fail"
    if index % 10 == 3:
        return "submit"
    return "videos" if index % 2 == 0 else "starvideos"


def items(n: int, seed: int = 10) -> list[Item]:
    counters = dict.fromkeys(TASKS, 0)
    result = []
    for index in range(n):
        task_id = task_of(index)
        rng = random.Random(seed * 100_003 + index)
        total = rng.uniform(15, 25) if task_id == "videos_fail" else rng.uniform(10, 90)
        queued = round(total * rng.uniform(0.1, 0.4), 1)
        result.append(
            Item(
                index=index,
                task_id=task_id,
                map_index=counters[task_id],
                prompt=f"System test item [i{index:04d}]: a lighthouse at dusk, waves, slow pan",
                queued_for=queued,
                processing_for=round(total - queued, 1),
                outcome="failed" if task_id == "videos_fail" else "completed",
            )
        )
        counters[task_id] += 1
    return result


def by_task(n: int) -> dict[str, list[Item]]:
    grouped: dict[str, list[Item]] = {task: [] for task in TASKS}
    for item in items(n):
        grouped[item.task_id].append(item)
    return grouped
