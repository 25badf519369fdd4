"""Clear the *successful* task instances of some tasks of one DAG run (run with the cluster's Airflow).

``python -m system_test.clear DAG_ID RUN_ID TASK_ID...``: what a user does to re-run a day's
generations that succeeded (``airflow tasks clear`` has no "only successful" filter). Prints how many
task instances it cleared.
"""

from __future__ import annotations

import sys


def main(argv: list[str]) -> int:
    dag_id, run_id, *task_ids = argv
    from airflow.models.taskinstance import TaskInstance, clear_task_instances
    from airflow.utils.session import create_session
    from airflow.utils.state import TaskInstanceState

    with create_session() as session:
        tis = (
            session.query(TaskInstance)
            .filter(
                TaskInstance.dag_id == dag_id,
                TaskInstance.run_id == run_id,
                TaskInstance.task_id.in_(task_ids),
                TaskInstance.state == TaskInstanceState.SUCCESS,
            )
            .all()
        )
        clear_task_instances(tis, session)
        print(len(tis))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
