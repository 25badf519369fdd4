"""``airflow vidgen ...`` commands, registered through the provider info's ``cli`` key (Airflow 3.x).

Airflow calls :func:`get_cli_commands` when it builds its command line: it must stay cheap (the
command's module is imported only when the command runs).
"""

from __future__ import annotations

from typing import Any


def get_cli_commands() -> list[Any]:
    """The ``vidgen`` command group: ``airflow vidgen plan``."""
    from airflow.cli.cli_config import ActionCommand, Arg, GroupCommand, lazy_load_command

    args = (
        Arg(("dag_id",), help="The DAG to plan"),
        Arg(("-s", "--start-date"), help="First logical date of the range (as for `airflow backfill create`)"),
        Arg(("-e", "--end-date"), help="Last logical date of the range (included)"),
        Arg(
            ("-r", "--run-id"),
            help="Plan one run instead of a range: an existing run id, or a logical date or run id to render as "
            "`airflow tasks render` does",
        ),
        Arg(
            ("--reprocess-behavior",),
            choices=("none", "completed", "failed"),
            help="As for `airflow backfill create`: whether dates that already have a finished run are run again "
            "(default: none). A date whose run is in flight is never run again",
        ),
        Arg(("-B", "--bundle-name"), help="The DAG bundle to read the DAG from", nargs="*"),
        Arg(
            ("--max-creates",),
            type=int,
            metavar="N",
            help="Exit non-zero (and say so) when the plan would create (bill) more than N generations",
        ),
        Arg(("--json",), action="store_true", help="Print the plan as JSON instead of tables"),
    )
    plan = ActionCommand(
        name="plan",
        help="What a run or a backfill would create (and bill), skip, or fail on; sends and writes nothing",
        description=(
            "Renders every vidgen create task of the DAG for each logical date of the range (per the DAG's "
            "schedule), validates its request, checks its output_path, and prints what would be created, "
            "skipped (output exists), invalid or unknown until run time. Exits non-zero when a request is "
            "invalid or when --max-creates is exceeded."
        ),
        func=lazy_load_command("airflow_provider_vidgen.cli.plan.plan_command"),
        args=args,
    )
    return [GroupCommand(name="vidgen", help="Vidgen (Videos / StarVideos) provider commands", subcommands=[plan])]
