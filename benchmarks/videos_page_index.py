"""Videos page benchmark (a script, not a test): answering a page with 10,000 recorded videos.

Builds an Airflow 3 metadata database (SQLite) holding ``--videos`` DAG runs that each saved one
video (half ``VideoDownloadOperator`` manifests, half create-operator ``output`` manifests) plus
``--other-xcoms`` XComs of other tasks per run, then times, median of ``--repeat``:

- the first sync (the index built from every recorded XCom: once per database);
- a sync with nothing new (what every page request pays first);
- page 1, a deep page (offset 5,000), a DAG filter, a date filter, a URI lookup (the stream's check);
- for comparison, the same page 1 answered by reading and decoding every manifest XCom and sorting.

It prints the figures and SQLite's query plan of the page query (which index answers it).

Usage (Airflow 3): .venv/airflow-3.3.2/bin/python benchmarks/videos_page_index.py [--videos 10000]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository: tests.videos_page.seed

DAGS = [f"dag_{n:02d}" for n in range(20)]


def timed(function: Callable[[], Any], repeat: int) -> float:
    """Median milliseconds of ``repeat`` calls."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=10_000)
    parser.add_argument("--other-xcoms", type=int, default=4, help="XComs of other tasks per run")
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()

    from sqlalchemy import create_engine, select, text
    from sqlalchemy.orm import Session

    from airflow_provider_vidgen.plugins import index
    from tests.videos_page.seed import T0, add_runs, airflow_tables

    workdir = Path(tempfile.mkdtemp(prefix="vidgen-videos-bench-"))
    engine = create_engine(f"sqlite:///{workdir / 'airflow.db'}")
    airflow_tables(engine)
    index.create_tables(engine)
    start = time.perf_counter()
    add_runs(engine, args.videos, dag_ids=DAGS, other_xcoms=args.other_xcoms)
    with engine.connect() as connection:
        xcoms = connection.execute(text("SELECT count(*) FROM xcom")).scalar()
    print(
        f"database: {args.videos} runs, {args.videos} saved videos, {xcoms} XComs ({time.perf_counter() - start:.1f} s)"
    )
    readable = set(DAGS)

    with Session(engine) as session:
        start = time.perf_counter()
        runs = index.sync(session)
        print(f"first sync (builds the index from every manifest XCom): {runs} runs, "
              f"{(time.perf_counter() - start) * 1000:.0f} ms, {index.count(session)} videos indexed")  # fmt: skip

        some_uri = f"file:///videos/dag_05/{args.videos - 15}.mp4"
        figures = {
            "sync, nothing new": lambda: index.sync(session),
            "page 1 (25 newest)": lambda: index.list_videos(session, readable_dag_ids=readable),
            "page 1, 2 of 20 DAGs readable": lambda: index.list_videos(session, readable_dag_ids={"dag_01", "dag_02"}),
            "page 201 (offset 5,000)": lambda: index.list_videos(session, readable_dag_ids=readable, offset=5000),
            "one DAG, page 1": lambda: index.list_videos(session, readable_dag_ids=readable, dag_id="dag_07"),
            "one day, page 1": lambda: index.list_videos(
                session, readable_dag_ids=readable, since=T0 + timedelta(days=3), until=T0 + timedelta(days=4)
            ),
            "URI lookup (stream check)": lambda: index.recorded(session, some_uri, readable),
            "DAG choices": lambda: index.dag_ids(session, readable),
        }  # fmt: skip
        for name, function in figures.items():
            print(f"{name:32s} {timed(function, args.repeat):8.2f} ms")

        def scan() -> list[Any]:
            from airflow.models.xcom import XComModel

            rows = session.execute(
                select(XComModel.dag_id, XComModel.task_id, XComModel.value, XComModel.timestamp).where(
                    XComModel.key.in_(index.MANIFEST_KEYS)
                )
            ).all()
            manifests = [row for row in rows if isinstance(row.value, dict) and "uri" in row.value]
            return sorted(manifests, key=lambda row: row.timestamp, reverse=True)[:25]

        print(f"{'page 1 by scanning the XComs':32s} {timed(scan, max(3, args.repeat // 4)):8.2f} ms (for comparison)")

        plans = {
            "a page, every DAG readable": "",
            "a page, some DAGs readable": "WHERE dag_id IN ('dag_01', 'dag_02') ",
            "a DAG's page": "WHERE dag_id = 'dag_01' ",
        }
        for name, where in plans.items():
            sql = f"EXPLAIN QUERY PLAN SELECT * FROM vidgen_saved_video {where}ORDER BY saved_at DESC, id DESC LIMIT 26"
            print(f"query plan of {name}:", "; ".join(str(row[-1]) for row in session.execute(text(sql))))


if __name__ == "__main__":
    main()
