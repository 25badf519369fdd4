"""``airflow vidgen plan``: what a run or a backfill of a DAG would create (and bill), before it runs.

For each logical date of the range (per the DAG's timetable, as ``airflow backfill create`` lists
them) and each vidgen create task, the task's templated fields are rendered the way Airflow renders
them for that run (the task's own ``render_template_fields`` on the task runner's context, as
``airflow tasks render`` does), the request is validated with the request models and the operator's
option checks, and ``output_path`` is checked against ``if_output_exists``. Nothing is sent to the
API (no hook is created, no connection is read) and nothing is written (the DAG is parsed without
being saved to the metadata database, and no probe file is written).

Airflow 3.x only: Airflow 2 has no way for a provider to add a command to ``airflow``.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Literal

from airflow_provider_vidgen.exceptions import VidgenError
from airflow_provider_vidgen.saving import as_storage_path, check_destination

Outcome = Literal["create", "skip", "invalid", "unknown"]

_XCOM_PULL_TASK = re.compile(r"xcom_pull\(\s*(?:task_ids\s*=\s*)?['\"]([^'\"]+)['\"]")


@dataclass(frozen=True)
class PlannedRun:
    """One run of the DAG as the plan renders it (the fields of the run the templates can read)."""

    run_id: str
    logical_date: datetime | None
    data_interval_start: datetime | None
    data_interval_end: datetime | None
    run_after: datetime
    run_type: str
    conf: dict[str, Any] | None = None

    @property
    def label(self) -> str:
        return self.logical_date.isoformat() if self.logical_date else self.run_id

    @classmethod
    def of(cls, dag_run: Any) -> PlannedRun:
        """The planned form of an existing DAG run (read, never changed)."""
        return cls(
            run_id=dag_run.run_id,
            logical_date=dag_run.logical_date,
            data_interval_start=dag_run.data_interval_start,
            data_interval_end=dag_run.data_interval_end,
            run_after=dag_run.run_after,
            run_type=str(getattr(dag_run.run_type, "value", dag_run.run_type)),
            conf=dag_run.conf or None,
        )


@dataclass
class Item:
    """One planned task instance (or, for ``unknown``, every instance of a mapped task in one run)."""

    task_id: str
    run_id: str
    logical_date: str | None
    family: str
    outcome: Outcome
    map_index: int = -1
    model: str | None = None
    seconds: int | None = None
    output: str | None = None
    detail: str = ""
    request: dict[str, Any] | None = None  # the rendered request body a create would send


@dataclass
class Row:
    """Counts of one task (or one family and model, or the total)."""

    create: int = 0
    seconds: int = 0
    skip: int = 0
    invalid: int = 0
    unknown: int = 0

    def add(self, item: Item) -> None:
        setattr(self, item.outcome, getattr(self, item.outcome) + 1)
        if item.outcome == "create":
            self.seconds += item.seconds or 0


@dataclass
class Plan:
    """Every planned item of a DAG over its runs."""

    dag_id: str
    runs: list[PlannedRun]
    items: list[Item] = field(default_factory=list)
    # Dates of the range the backfill would not run: (logical date, existing run id, why)
    not_run: list[tuple[str, str, str]] = field(default_factory=list)

    def _rows(self, key: Any) -> dict[Any, Row]:
        rows: dict[Any, Row] = {}
        for item in self.items:
            rows.setdefault(key(item), Row()).add(item)
        return rows

    @property
    def by_task(self) -> dict[tuple[str, str, str], Row]:
        return self._rows(lambda item: (item.task_id, item.family, item.model or "-"))

    @property
    def by_model(self) -> dict[tuple[str, str], Row]:
        return self._rows(lambda item: (item.family, item.model or "-"))

    @property
    def total(self) -> Row:
        total = Row()
        for item in self.items:
            total.add(item)
        return total

    def as_json(self, max_creates: int | None = None) -> dict[str, Any]:
        total = self.total
        return {
            "dag_id": self.dag_id,
            "runs": [{"run_id": run.run_id, "logical_date": _iso(run.logical_date)} for run in self.runs],
            "not_run": [
                {"logical_date": logical_date, "run_id": run_id, "reason": reason}
                for logical_date, run_id, reason in self.not_run
            ],
            "items": [asdict(item) for item in self.items],
            "by_task": [
                {"task_id": task_id, "family": family, "model": model, **asdict(row)}
                for (task_id, family, model), row in self.by_task.items()
            ],
            "by_model": [
                {"family": family, "model": model, **asdict(row)} for (family, model), row in self.by_model.items()
            ],
            "total": asdict(total),
            "max_creates": max_creates,
            "max_creates_exceeded": max_creates is not None and total.create > max_creates,
        }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


# -- runs ---------------------------------------------------------------------------------------------


def _serialized(dag: Any) -> Any:
    # Airflow 3.x APIs (this module is never imported on Airflow 2): hence the ignores for its type check
    from airflow.serialization.serialized_objects import DagSerialization  # type: ignore[attr-defined,unused-ignore]

    return DagSerialization.from_dict(DagSerialization.to_dict(dag))


def runs_between(dag: Any, start: datetime, end: datetime) -> list[PlannedRun]:
    """The runs ``airflow backfill create`` would make for ``start`` .. ``end`` (both included)."""
    from airflow.models.dagrun import DagRun
    from airflow.sdk import timezone
    from airflow.utils.types import DagRunType

    serialized = _serialized(dag)
    infos = list(serialized.iter_dagrun_infos_between(start, end))
    if not serialized.timetable.partitioned:  # as a backfill: only intervals that have ended
        now = timezone.utcnow()
        infos = [info for info in infos if info.data_interval and info.data_interval.end < now]
    runs = []
    for info in infos:
        interval = info.data_interval
        runs.append(
            PlannedRun(
                run_id=DagRun.generate_run_id(  # type: ignore[call-arg,unused-ignore]
                    run_type=DagRunType.BACKFILL_JOB, logical_date=info.logical_date, run_after=info.run_after
                ),
                logical_date=info.logical_date,
                data_interval_start=interval.start if interval else None,
                data_interval_end=interval.end if interval else None,
                run_after=info.run_after,
                run_type=DagRunType.BACKFILL_JOB.value,
            )
        )
    return runs


def _no_create_reason(state: str, reprocess_behavior: str) -> str | None:
    """Why ``airflow backfill create --reprocess-behavior R`` makes no run for a date with a run in ``state``."""
    if state not in ("success", "failed"):
        return f"a run is in flight ({state}): the backfill does not create one"
    if reprocess_behavior == "none" or (reprocess_behavior == "failed" and state != "failed"):
        return f"a run exists ({state}): the backfill does not re-run it (--reprocess-behavior {reprocess_behavior})"
    return None


def apply_existing_runs(
    dag_id: str, runs: list[PlannedRun], reprocess_behavior: str = "none"
) -> tuple[list[PlannedRun], list[tuple[str, str, str]]]:
    """The runs a backfill would really run, given the runs of ``dag_id`` already in the metadata database.

    As ``airflow backfill create`` does: a date whose latest run is in flight gets no run; a finished run
    is left alone (``none``, or ``failed`` for a successful one), else cleared and run again, with its
    own run id and conf. Only reads the database.
    """
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import select

    kept: list[PlannedRun] = []
    not_run: list[tuple[str, str, str]] = []
    with create_session() as session:
        for run in runs:
            found = None
            if run.logical_date is not None:
                found = session.scalar(
                    select(DagRun)
                    .where(DagRun.dag_id == dag_id, DagRun.logical_date == run.logical_date)
                    .order_by(DagRun.start_date.is_(None), DagRun.start_date.desc())
                    .limit(1)
                )
            if found is None:
                kept.append(run)
                continue
            state = str(getattr(found.state, "value", found.state))
            reason = _no_create_reason(state, reprocess_behavior)
            if reason is not None:
                not_run.append((run.label, found.run_id, reason))
                continue
            kept.append(  # cleared: its tasks run again in the existing run
                PlannedRun.of(found)
            )
        session.rollback()
    return kept, not_run


def run_for(dag: Any, value: str) -> PlannedRun:
    """One run: an existing run (by run id or logical date, read only), else what ``tasks render`` makes of it."""
    from airflow.cli.utils import (  # type: ignore[attr-defined,unused-ignore]
        fetch_dag_run_from_run_id_or_logical_date_string,
    )
    from airflow.sdk import timezone
    from airflow.utils.session import create_session
    from airflow.utils.types import DagRunType

    with create_session() as session:
        found, logical_date = fetch_dag_run_from_run_id_or_logical_date_string(
            dag_id=dag.dag_id, value=value, session=session
        )
        if found is not None:
            return PlannedRun.of(found)
        session.rollback()
    logical_date = timezone.coerce_datetime(logical_date) if logical_date else None
    interval = _serialized(dag).timetable.infer_manual_data_interval(run_after=logical_date) if logical_date else None
    return PlannedRun(
        run_id=value,
        logical_date=logical_date,
        data_interval_start=interval.start if interval else None,
        data_interval_end=interval.end if interval else None,
        run_after=interval.end if interval else timezone.utcnow(),
        run_type=DagRunType.MANUAL.value,
    )


# -- rendering ----------------------------------------------------------------------------------------


def _context(task: Any, run: PlannedRun, map_index: int) -> Any:
    """The task runner's template context for ``task`` in ``run`` (built in memory, nothing is stored)."""
    from airflow.sdk import timezone
    from airflow.sdk.api.datamodels._generated import DagRun, DagRunState, DagRunType, TIRunContext
    from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

    dag_run = DagRun(
        dag_id=task.dag_id,
        run_id=run.run_id,
        logical_date=run.logical_date,
        data_interval_start=run.data_interval_start,
        data_interval_end=run.data_interval_end,
        run_after=run.run_after,
        start_date=timezone.utcnow(),
        end_date=None,
        run_type=DagRunType(run.run_type),
        state=DagRunState.RUNNING,
        conf=run.conf,
        consumed_asset_events=[],
        partition_key=None,
    )
    ti = RuntimeTaskInstance.model_construct(
        id=uuid.uuid4(),
        task_id=task.task_id,
        dag_id=task.dag_id,
        run_id=run.run_id,
        try_number=1,
        dag_version_id=uuid.uuid4(),
        map_index=map_index,
        task=task,
        max_tries=task.retries,
        start_date=timezone.utcnow(),
        _ti_context_from_server=TIRunContext(dag_run=dag_run, max_tries=task.retries),
    )
    return ti.get_template_context()


def _is_create_operator(task: Any) -> bool:
    from airflow_provider_vidgen.operators.vidgen import _VidgenCreateOperator

    operator_class = getattr(task, "operator_class", None)  # a mapped task
    return isinstance(task, _VidgenCreateOperator) or (
        isinstance(operator_class, type) and issubclass(operator_class, _VidgenCreateOperator)
    )


def _family(task: Any) -> str:
    return str(getattr(task, "operator_class", type(task)).family.display_name)


def _map_count(task: Any) -> int | None:
    """How many instances a task mapped over literal values has (``None``: not a mapped task)."""
    from airflow.sdk.definitions._internal.expandinput import DictOfListsExpandInput

    expand = getattr(task, "_get_specified_expand_input", None)
    if expand is None:
        return None
    value = expand().value
    if isinstance(expand(), DictOfListsExpandInput):
        count = 1
        for values in value.values():
            count *= len(values)
        return count
    return len(value)


def _upstreams(task: Any) -> list[str]:
    """Upstream tasks whose XCom a task's arguments depend on (mapped over, or an XComArg in a field)."""
    from airflow.sdk.definitions.xcom_arg import XComArg

    names: list[str] = []
    if hasattr(task, "iter_mapped_dependencies"):
        names += [upstream.task_id for upstream in task.iter_mapped_dependencies()]
        values: Iterable[Any] = getattr(task, "partial_kwargs", {}).values()
    else:
        values = (getattr(task, name, None) for name in task.template_fields)
    for value in values:
        names += [operator.task_id for operator, _ in XComArg.iter_xcom_references(value)]
    return sorted(set(names))


def _templates(task: Any) -> Iterable[str]:
    values: Iterable[Any] = (
        getattr(task, "partial_kwargs", {}).values()
        if hasattr(task, "partial_kwargs")
        else (getattr(task, name, None) for name in task.template_fields)
    )
    for value in values:
        if isinstance(value, str):
            yield value
        elif isinstance(value, Sequence | Mapping):
            yield from (v for v in (value.values() if isinstance(value, Mapping) else value) if isinstance(v, str))


def _xcom_pulls(task: Any) -> list[str] | None:
    """Upstreams read with ``xcom_pull`` in a template (``None``: no template reads XCom)."""
    texts = [text for text in _templates(task) if "xcom_pull" in text]
    if not texts:
        return None
    return sorted({match for text in texts for match in _XCOM_PULL_TASK.findall(text)})


def _describe(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return " ".join(text.split())


def _plan_instance(task: Any, run: PlannedRun, map_index: int) -> Item:
    item = Item(
        task_id=task.task_id,
        run_id=run.run_id,
        logical_date=_iso(run.logical_date),
        family=_family(task),
        outcome="invalid",
        map_index=map_index,
    )
    item.model = getattr(task, "model", None) or getattr(task, "partial_kwargs", {}).get("model")
    try:
        runnable = task.prepare_for_execution()
        context = _context(runnable, run, map_index)
        runnable.render_template_fields(context)
        rendered = context["task"]  # a mapped task renders into the task it unmaps to
        item.model = getattr(rendered, "model", item.model)
        rendered._validate_options(rendered=True)
        request = rendered.build_request()
    except (VidgenError, ValueError, TypeError) as error:  # pydantic's ValidationError is a ValueError
        item.detail = _describe(error)
        return item
    except Exception as error:  # a template that does not render (undefined variable, ...) fails the task
        item.detail = f"rendering failed: {_describe(error)}"
        return item
    item.model = request.model
    item.request = request.to_wire()
    item.seconds = rendered.family.seconds(request)
    item.outcome = "create"
    if rendered.output_path:
        try:
            output = as_storage_path(rendered.output_path)
            item.output = str(output)
            # As the operator does (saving.keep_existing), without reading the object for its manifest:
            check_destination(output)
            exists = output.exists()
        except VidgenError as error:
            item.outcome, item.detail = "invalid", _describe(error)
            return item
        if exists and rendered.if_output_exists == "skip":
            item.outcome, item.detail = "skip", "output exists"
        elif exists and rendered.if_output_exists == "fail":
            item.outcome = "invalid"
            item.detail = f"{output} already exists (if_output_exists='fail'): the task would fail"
        elif exists:
            item.detail = "output exists, overwritten"
    return item


def plan_task(task: Any, run: PlannedRun) -> list[Item]:
    """The items of one create task in one run."""
    upstreams = _upstreams(task)
    pulls = _xcom_pulls(task)
    if upstreams or pulls is not None:
        names = sorted(set(upstreams) | set(pulls or ()))
        if hasattr(task, "iter_mapped_dependencies") and task.iter_mapped_dependencies():
            what = "mapped over the XCom of"
        else:
            what = "reads the XCom of"
        detail = f"{what} {', '.join(repr(name) for name in names)}" if names else "reads XCom at run time"
        return [
            Item(
                task_id=task.task_id,
                run_id=run.run_id,
                logical_date=_iso(run.logical_date),
                family=_family(task),
                outcome="unknown",
                map_index=-1,
                model=getattr(task, "model", None) or getattr(task, "partial_kwargs", {}).get("model"),
                detail=detail + " (known at run time)",
            )
        ]
    count = _map_count(task)
    if count is None:
        return [_plan_instance(task, run, -1)]
    return [_plan_instance(task, run, index) for index in range(count)]


def build_plan(dag: Any, runs: list[PlannedRun]) -> Plan:
    """Plan every vidgen create task of ``dag`` for every run."""
    plan = Plan(dag_id=dag.dag_id, runs=runs)
    tasks = [task for task in dag.tasks if _is_create_operator(task)]
    for run in runs:
        for task in tasks:
            plan.items.extend(plan_task(task, run))
    return plan


# -- output -------------------------------------------------------------------------------------------


def _table(header: Sequence[str], rows: list[Sequence[Any]]) -> list[str]:
    cells = [[str(cell) for cell in row] for row in [header, *rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    numeric = [all(row[i].isdigit() for row in cells[1:]) and bool(cells[1:]) for i in range(len(header))]
    lines = []
    for row in cells:
        parts = [
            cell.rjust(width) if num else cell.ljust(width)
            for cell, width, num in zip(row, widths, numeric, strict=True)
        ]
        lines.append("  ".join(parts).rstrip())
    return lines


def _counts(row: Row) -> list[int]:
    return [row.create, row.seconds, row.skip, row.invalid, row.unknown]


COLUMNS = ("create", "seconds", "skip", "invalid", "unknown")


def render_text(plan: Plan) -> str:
    """The plan as tables: per task, per family and model, total; then every invalid and unknown item."""
    runs = plan.runs
    span = f"{runs[0].label} .. {runs[-1].label}" if len(runs) > 1 else (runs[0].label if runs else "no run")
    lines = [f"Plan for {plan.dag_id}: {len(runs)} run(s), {span}", ""]
    if plan.not_run:
        lines.append(f"Not run by the backfill ({len(plan.not_run)} date(s), nothing planned for them):")
        lines += [f"  {logical_date} ({run_id}): {reason}" for logical_date, run_id, reason in plan.not_run]
        lines.append("")
    if not plan.items:
        lines.append("No vidgen create task in these runs: nothing would be created.")
        return "\n".join(lines)
    lines += _table(
        ("task", "family", "model", *COLUMNS),
        [(task_id, family, model, *_counts(row)) for (task_id, family, model), row in plan.by_task.items()],
    )
    lines.append("")
    model_rows: list[Sequence[Any]] = [(family, model, *_counts(row)) for (family, model), row in plan.by_model.items()]
    lines += _table(("family", "model", *COLUMNS), [*model_rows, ("total", "", *_counts(plan.total))])
    for outcome, title in (
        ("invalid", "Invalid (the task would fail, nothing billed)"),
        ("unknown", "Unknown until run time"),
    ):
        chosen = [item for item in plan.items if item.outcome == outcome]
        if chosen:
            lines += ["", f"{title}:"]
            for item in chosen:
                where = item.task_id + (f"[{item.map_index}]" if item.map_index >= 0 else "")
                lines.append(f"  {where} {item.logical_date or item.run_id}: {item.detail}")
    return "\n".join(lines)


def verdict(plan: Plan, max_creates: int | None) -> str | None:
    """Why the plan is refused (the command exits non-zero), or ``None``."""
    total = plan.total
    reasons = []
    if total.invalid:
        reasons.append(f"{total.invalid} invalid request(s)")
    if max_creates is not None and total.create > max_creates:
        reasons.append(f"{total.create} generations would be created, more than --max-creates {max_creates}")
    return "Plan refused: " + "; ".join(reasons) if reasons else None


# -- the command --------------------------------------------------------------------------------------


def load_dag(dag_id: str, bundle_names: list[str] | None = None) -> Any:
    """Parse ``dag_id`` from the configured DAG bundles (as ``get_bagged_dag``, without saving it to the DB)."""
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import BundleDagBag
    from airflow.sdk.definitions._internal.dag_parsing_context import _airflow_parsing_context_manager

    manager = DagBundlesManager()
    bundles = [manager.get_bundle(name) for name in bundle_names] if bundle_names else manager.get_all_dag_bundles()
    import_errors: dict[str, str] = {}
    for bundle in bundles:
        bundle.initialize()
        with _airflow_parsing_context_manager(dag_id=dag_id):
            dagbag = BundleDagBag(dag_folder=bundle.path, bundle_path=bundle.path, bundle_name=bundle.name)
        if dag := dagbag.dags.get(dag_id):
            return dag
        import_errors.update(dagbag.import_errors)
    message = f"Dag {dag_id!r} could not be found in the DAG bundles"
    if not import_errors:
        raise SystemExit(message + ".")
    from airflow.sdk.log import redact

    failed = "\n".join(f"--- {path}:\n{str(error).rstrip()}" for path, error in sorted(import_errors.items()))
    raise SystemExit(redact(f"{message}; it may be in a file that failed to import:\n{failed}"))


def plan_command(args: Any) -> None:
    """``airflow vidgen plan DAG_ID (--start-date A --end-date B | --run-id R) [--max-creates N] [--json]``."""
    from airflow.sdk import timezone
    from airflow.utils.providers_configuration_loader import providers_configuration_loaded

    @providers_configuration_loaded
    def run() -> None:
        if args.run_id and (args.start_date or args.end_date):
            raise SystemExit("Give either --run-id or --start-date/--end-date, not both")
        if args.max_creates is not None and args.max_creates < 0:
            raise SystemExit("--max-creates must be 0 or more")
        dag = load_dag(args.dag_id, args.bundle_name)
        not_run: list[tuple[str, str, str]] = []
        if args.run_id:
            runs = [run_for(dag, args.run_id)]
        elif args.start_date and args.end_date:
            runs = runs_between(dag, timezone.parse(args.start_date), timezone.parse(args.end_date))
            runs, not_run = apply_existing_runs(dag.dag_id, runs, getattr(args, "reprocess_behavior", None) or "none")
        else:
            raise SystemExit("Give --start-date and --end-date (a backfill's range), or --run-id")
        plan = build_plan(dag, runs)
        plan.not_run = not_run
        # A template may read a connection's password or a sensitive Variable: what rendering masks
        # in a task's logs is masked here too.
        from airflow.sdk.log import redact

        if args.json:
            print(json.dumps(redact(plan.as_json(args.max_creates), max_depth=32), indent=2))
        else:
            print(redact(render_text(plan)))
        refused = verdict(plan, args.max_creates)
        if refused:
            raise SystemExit(refused)

    run()
