"""The index of saved videos behind the Videos page (Airflow 3 API server).

A table of the plugin's own in Airflow's metadata database, ``vidgen_saved_video``: one row per
saved video (a manifest), with indexes on ``(saved_at, id)``, ``(dag_id, saved_at, id)``,
``generation_id`` and the SHA-256 of the URI, and one unique row per manifest XCom. Pages are
answered from it with an indexed query.

It is filled from what the runs recorded, incrementally, before the page answers (:func:`sync`):

- the ``output`` XCom of the create operators (``output_path``) and the ``return_value`` of
  ``VideoDownloadOperator`` (the manifest ``generation_id, uri, bytes, sha256, content_type,
  actual_duration, model``); asset events carry the same manifests in their ``extra``;
- only the XComs of DAG runs updated since the last sync (minus a margin) or still queued/running
  are read, by ``xcom.dag_run_id`` (the leading column of the XCom primary key), and a run's rows
  are replaced as a whole, so a cleared and re-run task shows its newest save; the rows of a deleted
  DAG run are removed.

The tables are created on first use (``checkfirst``); ``airflow db migrate`` does not manage them
and ``airflow db reset`` drops them with everything else (they are rebuilt from the XComs).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    and_,
    delete,
    func,
    insert,
    or_,
    select,
)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from airflow_provider_vidgen.families import FAMILIES, family_of_model

#: The create operators (class name: family), whose ``output`` XComs are manifests of saved videos.
CREATE_OPERATORS = {family.operator_name: family.display_name for family in FAMILIES}
DOWNLOAD_OPERATOR = "VideoDownloadOperator"
MANIFEST_KEYS = ("output", "return_value")
#: How far back a sync looks again before its watermark (commits are not ordered like timestamps).
SYNC_OVERLAP = timedelta(minutes=5)

metadata = MetaData()

videos = Table(
    "vidgen_saved_video",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("dag_run_id", Integer, nullable=False),
    Column("dag_id", String(250), nullable=False),
    Column("run_id", String(250), nullable=False),
    Column("task_id", String(250), nullable=False),
    Column("map_index", Integer, nullable=False),
    Column("xcom_key", String(20), nullable=False),
    Column("generation_id", String(250), nullable=True),
    Column("family", String(32), nullable=True),
    Column("model", String(100), nullable=True),
    Column("uri", String(4000), nullable=False),
    Column("uri_sha256", String(64), nullable=False),
    Column("bytes", BigInteger, nullable=True),
    Column("sha256", String(64), nullable=True),
    Column("content_type", String(100), nullable=True),
    Column("actual_duration", Float, nullable=True),
    Column("kept_existing", Integer, nullable=False, default=0),
    Column("saved_at", DateTime, nullable=False),
    Index("idx_vidgen_video_saved", "saved_at", "id"),
    Index("idx_vidgen_video_dag_saved", "dag_id", "saved_at", "id"),
    Index("idx_vidgen_video_generation", "generation_id"),
    Index("idx_vidgen_video_uri", "uri_sha256"),
    # One row per manifest XCom: two API server workers syncing the same run at once cannot both insert it.
    Index("idx_vidgen_video_xcom", "dag_run_id", "task_id", "map_index", "xcom_key", unique=True),
)

sync_state = Table(
    "vidgen_saved_video_sync",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("synced_until", DateTime, nullable=True),
)

COLUMNS = (
    "id",
    "dag_id",
    "run_id",
    "task_id",
    "map_index",
    "generation_id",
    "family",
    "model",
    "uri",
    "bytes",
    "sha256",
    "content_type",
    "actual_duration",
    "kept_existing",
    "saved_at",
)


def uri_key(uri: str) -> str:
    """The indexed form of a URI (a fixed-length digest: URIs can be longer than an index allows)."""
    return hashlib.sha256(uri.encode()).hexdigest()


def create_tables(engine: Engine) -> None:
    """Create the index tables if they are not there yet."""
    try:
        metadata.create_all(engine, checkfirst=True)
    except OperationalError:  # another API server worker created them at the same moment
        metadata.create_all(engine, checkfirst=True)


def _naive_utc(value: datetime) -> datetime:
    return value.astimezone(timezone.utc).replace(tzinfo=None) if value.tzinfo else value


def family_of(operator: str | None, model: Any) -> str | None:
    """The family's display name (``Videos``, ``StarVideos``): from the model name, else from the operator."""
    family = family_of_model(model)
    return family.display_name if family is not None else CREATE_OPERATORS.get(operator or "")


def manifest_row(
    manifest: Any, *, operator: str | None, key: str, dag_run_id: int, dag_id: str, run_id: str, task_id: str,
    map_index: int, saved_at: datetime,
) -> dict[str, Any] | None:  # fmt: skip
    """The index row of one XCom, or ``None`` when it is not a manifest of a saved video."""
    if key == "output" and operator not in CREATE_OPERATORS:
        return None
    if key == "return_value" and operator != DOWNLOAD_OPERATOR:
        return None
    if not isinstance(manifest, dict):
        return None
    uri = manifest.get("uri")
    if not isinstance(uri, str) or not uri:
        return None

    def number(value: Any, kind: type) -> Any:
        return kind(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None

    def text(value: Any, limit: int) -> str | None:
        return value[:limit] if isinstance(value, str) and value else None

    return {
        "dag_run_id": dag_run_id,
        "dag_id": dag_id,
        "run_id": run_id,
        "task_id": task_id,
        "map_index": map_index,
        "xcom_key": key,
        "generation_id": text(manifest.get("generation_id"), 250),
        "family": family_of(operator, manifest.get("model")),
        "model": text(manifest.get("model"), 100),
        "uri": uri,
        "uri_sha256": uri_key(uri),
        "bytes": number(manifest.get("bytes"), int),
        "sha256": text(manifest.get("sha256"), 64),
        "content_type": text(manifest.get("content_type"), 100),
        "actual_duration": number(manifest.get("actual_duration"), float),
        "kept_existing": 1 if manifest.get("skipped") else 0,
        "saved_at": _naive_utc(saved_at),
    }


def _decode(value: Any) -> Any:
    """An XCom value as stored by Airflow 3 (JSON; older rows may hold the JSON text)."""
    from airflow.models.xcom import XComModel  # type: ignore[attr-defined,unused-ignore]  # Airflow 3

    class _Row:
        def __init__(self, value: Any) -> None:
            self.value = value

    try:
        decoded = XComModel.deserialize_value(_Row(value))
    except Exception:
        return None
    if isinstance(decoded, str):
        try:
            return json.loads(decoded)
        except ValueError:
            return None
    return decoded


def _rows_of_runs(session: Session, run_ids: Sequence[int] | None) -> list[dict[str, Any]]:
    """The index rows of these DAG runs' manifests (of every run when ``run_ids`` is ``None``)."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.xcom import XComModel  # type: ignore[attr-defined,unused-ignore]  # Airflow 3

    rows: list[dict[str, Any]] = []
    chunks: list[Sequence[int] | None] = (
        [None] if run_ids is None else [run_ids[start : start + 500] for start in range(0, len(run_ids), 500)]
    )
    for chunk in chunks:
        query = (
            select(
                XComModel.dag_run_id,
                XComModel.dag_id,
                XComModel.run_id,
                XComModel.task_id,
                XComModel.map_index,
                XComModel.key,
                XComModel.value,
                XComModel.timestamp,
                TaskInstance.operator,
            )
            .join(
                TaskInstance,
                and_(
                    TaskInstance.dag_id == XComModel.dag_id,
                    TaskInstance.run_id == XComModel.run_id,
                    TaskInstance.task_id == XComModel.task_id,
                    TaskInstance.map_index == XComModel.map_index,
                ),
            )
            .where(XComModel.key.in_(MANIFEST_KEYS))
        )
        if chunk is not None:
            query = query.where(XComModel.dag_run_id.in_(chunk))
        for xcom in session.execute(query):
            row = manifest_row(
                _decode(xcom.value),
                operator=xcom.operator,
                key=xcom.key,
                dag_run_id=xcom.dag_run_id,
                dag_id=xcom.dag_id,
                run_id=xcom.run_id,
                task_id=xcom.task_id,
                map_index=xcom.map_index,
                saved_at=xcom.timestamp,
            )
            if row is not None:
                rows.append(row)
    return rows


def sync(session: Session) -> int:
    """Bring the index up to date with the runs updated since the last sync.

    :returns: how many DAG runs were (re)read.
    """
    from airflow.models.dagrun import DagRun

    synced_until = session.execute(select(sync_state.c.synced_until).where(sync_state.c.id == 1)).scalar()
    query = select(DagRun.id, DagRun.updated_at)
    if synced_until is not None:
        # Airflow's timestamp columns compare with aware datetimes only; the index stores naive UTC.
        since = synced_until.replace(tzinfo=timezone.utc) - SYNC_OVERLAP
        query = query.where(or_(DagRun.updated_at >= since, DagRun.state.in_(("queued", "running"))))
    runs = session.execute(query).all()
    if synced_until is not None and _drop_deleted_runs(session):
        session.commit()
    if not runs:
        return 0
    run_ids = [run.id for run in runs]
    full = synced_until is None  # the first sync reads every manifest XCom once, without a list of runs
    rows = _rows_of_runs(session, None if full else run_ids)
    newest = max((_naive_utc(run.updated_at) for run in runs if run.updated_at is not None), default=None)
    advance = newest is not None and (synced_until is None or newest > synced_until)
    if not full and not advance and _unchanged(session, run_ids, rows):
        session.rollback()  # nothing new: no write, no commit
        return len(run_ids)
    try:
        if full:
            session.execute(delete(videos))
        else:
            for start in range(0, len(run_ids), 500):
                session.execute(delete(videos).where(videos.c.dag_run_id.in_(run_ids[start : start + 500])))
        if rows:
            session.execute(insert(videos), rows)
        if advance:
            if full and session.execute(select(sync_state.c.id)).first() is None:
                session.execute(insert(sync_state).values(id=1, synced_until=newest))
            else:
                session.execute(sync_state.update().where(sync_state.c.id == 1).values(synced_until=newest))
        session.commit()
    except IntegrityError:  # another API server worker synced the same runs at the same moment
        session.rollback()
    return len(run_ids)


def _drop_deleted_runs(session: Session) -> bool:
    """Remove the rows of DAG runs that were deleted (with their XComs); whether there were any."""
    from airflow.models.dagrun import DagRun

    gone = select(videos.c.dag_run_id).where(~select(DagRun.id).where(DagRun.id == videos.c.dag_run_id).exists())
    deleted = list(session.execute(gone.distinct()).scalars())
    for start in range(0, len(deleted), 500):
        session.execute(delete(videos).where(videos.c.dag_run_id.in_(deleted[start : start + 500])))
    return bool(deleted)


_COMPARED = ("dag_run_id", "task_id", "map_index", "xcom_key", "uri", "sha256", "bytes", "saved_at", "generation_id")


def _unchanged(session: Session, run_ids: Sequence[int], rows: list[dict[str, Any]]) -> bool:
    """Whether the index already holds exactly ``rows`` for these runs."""
    held: set[tuple[Any, ...]] = set()
    for start in range(0, len(run_ids), 500):
        query = select(*(videos.c[name] for name in _COMPARED)).where(
            videos.c.dag_run_id.in_(run_ids[start : start + 500])
        )
        held.update(tuple(row) for row in session.execute(query))
    return held == {tuple(row[name] for name in _COMPARED) for row in rows}


@dataclass(frozen=True)
class Page:
    """One page of the listing, newest first."""

    items: list[dict[str, Any]]
    has_more: bool


def _as_item(row: Any) -> dict[str, Any]:
    item = {name: getattr(row, name) for name in COLUMNS}
    item["saved_at"] = row.saved_at.replace(tzinfo=timezone.utc).isoformat()
    item["kept_existing"] = bool(row.kept_existing)
    return item


def list_videos(
    session: Session,
    *,
    readable_dag_ids: Iterable[str],
    dag_id: str | None = None,
    generation_id: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    offset: int = 0,
    limit: int = 25,
) -> Page:
    """A page of saved videos of the DAGs in ``readable_dag_ids`` (newest first)."""
    readable = set(readable_dag_ids)
    if dag_id is not None:
        readable &= {dag_id}
    if not readable:
        return Page([], False)
    query = select(*(videos.c[name] for name in COLUMNS))
    if dag_id is not None:
        query = query.where(videos.c.dag_id == dag_id)
    elif not set(dag_ids(session, readable, every=True)) <= readable:
        query = query.where(videos.c.dag_id.in_(sorted(readable)))
    # else: every DAG with videos is readable, and the newest-first index answers without a filter
    if generation_id:
        query = query.where(videos.c.generation_id == generation_id)
    if since is not None:
        query = query.where(videos.c.saved_at >= _naive_utc(since))
    if until is not None:
        query = query.where(videos.c.saved_at < _naive_utc(until))
    query = query.order_by(videos.c.saved_at.desc(), videos.c.id.desc()).offset(offset).limit(limit + 1)
    rows = session.execute(query).all()
    return Page([_as_item(row) for row in rows[:limit]], len(rows) > limit)


def dag_ids(session: Session, readable_dag_ids: Iterable[str], every: bool = False) -> list[str]:
    """The DAGs that saved videos, among the readable ones (for the filter's choices); all of them with ``every``."""
    found = set(session.execute(select(videos.c.dag_id).distinct()).scalars())
    return sorted(found if every else found & set(readable_dag_ids))


def recorded(session: Session, uri: str, readable_dag_ids: Iterable[str]) -> dict[str, Any] | None:
    """The newest manifest that recorded ``uri`` in a readable DAG, or ``None`` (never recorded, or not readable)."""
    readable = set(readable_dag_ids)
    query = (
        select(*(videos.c[name] for name in COLUMNS))
        .where(videos.c.uri_sha256 == uri_key(uri))
        .order_by(videos.c.saved_at.desc(), videos.c.id.desc())
    )
    for row in session.execute(query):
        if row.uri == uri and row.dag_id in readable:
            return _as_item(row)
    return None


def count(session: Session) -> int:
    """How many videos the index holds."""
    return int(session.execute(select(func.count()).select_from(videos)).scalar() or 0)
