"""Operator options and mapped operators: every mistake fails at DAG import, or after rendering but
before the create (0 creates at the emulator); generation ids are normalised where they enter."""

from __future__ import annotations

import textwrap
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from airflow.providers.common.compat.sdk import DAG, AirflowFailException

from airflow_provider_vidgen.exceptions import VidgenValidationError
from airflow_provider_vidgen.hooks.vidgen import VidgenHook
from airflow_provider_vidgen.models import VideosRequest
from airflow_provider_vidgen.operators.vidgen import (
    StarVideosCreateOperator,
    VideoDownloadOperator,
    VideosCreateOperator,
)
from airflow_provider_vidgen.testing import Emulator, Timeline

#: (option, a wrong value): each a type or value the option must refuse.
BAD_CREATE_OPTIONS = [
    ("max_consecutive_failures", "3"),
    ("max_consecutive_failures", None),
    ("max_consecutive_failures", -1),
    ("max_consecutive_failures", 2.5),
    ("max_consecutive_failures", True),
    ("poll_interval", "3"),
    ("poll_interval", None),
    ("poll_interval", -1),
    ("poll_interval", 0),
    ("poll_interval", float("nan")),
    ("poll_interval", True),
    ("timeout", "3"),
    ("timeout", None),
    ("timeout", -1),
    ("timeout", timedelta(0)),
    ("timeout", float("inf")),
    ("deferrable", "true"),
    ("deferrable", None),
    ("durable", "false"),
    ("durable", None),
    ("durable", 0),
    ("retry_on_unknown_create_outcome", "no"),
    ("retry_on_unknown_create_outcome", None),
    ("wait_for_completion", "yes"),
    ("wait_for_completion", None),
    ("wait_for_completion", 1),
    ("if_output_exists", "never"),
    ("if_output_exists", None),
    ("output_path", 3),
    ("output_path", ""),
    ("output_path", ["/data/a.mp4"]),
    ("vidgen_conn_id", None),
    ("vidgen_conn_id", ""),
    ("vidgen_conn_id", 3),
]


def ids(cases: list[tuple[str, Any]]) -> list[str]:
    return [f"{name}={value!r}" for name, value in cases]


def videos(**kwargs: Any) -> VideosCreateOperator:
    return VideosCreateOperator(**{"task_id": "t", "prompt": "a cat", "duration": 5, **kwargs})


@pytest.mark.parametrize(("option", "value"), BAD_CREATE_OPTIONS, ids=ids(BAD_CREATE_OPTIONS))
def test_each_bad_option_is_a_dag_import_error(option: str, value: Any) -> None:
    with pytest.raises(VidgenValidationError, match=rf"{option}: must be") as info:
        videos(**{option: value})
    assert isinstance(info.value, AirflowFailException)
    with pytest.raises(VidgenValidationError, match=rf"{option}: must be"):
        StarVideosCreateOperator(task_id="t", prompt="p", **{option: value})


@pytest.mark.parametrize(("option", "value"), BAD_CREATE_OPTIONS, ids=ids(BAD_CREATE_OPTIONS))
def test_each_bad_option_after_rendering_fails_before_the_create(
    option: str, value: Any, context: dict[str, Any], emulator_conn: Emulator
) -> None:
    op = videos(wait_for_completion=True, poll_interval=0.05)
    setattr(op, option, value)  # what rendering (or a later change) left there
    with pytest.raises(VidgenValidationError, match=rf"{option}: must be") as info:
        op.execute(context)
    assert isinstance(info.value, AirflowFailException)
    assert emulator_conn.creates() == []
    assert emulator_conn.requests == []


def test_options_from_default_args_are_checked_at_import() -> None:
    with (
        pytest.raises(VidgenValidationError, match="max_consecutive_failures: must be"),
        DAG("d", schedule=None, start_date=None, default_args={"max_consecutive_failures": "3"}),
    ):
        videos()


def test_templated_options_wait_for_rendering(context: dict[str, Any], emulator_conn: Emulator) -> None:
    op = videos(vidgen_conn_id="{{ var.value.conn }}", output_path="{{ params.out }}")  # no error yet
    op.vidgen_conn_id, op.output_path = "", None  # rendered to something wrong
    with pytest.raises(VidgenValidationError, match="vidgen_conn_id: must be"):
        op.execute(context)
    assert emulator_conn.requests == []


def test_good_options_are_accepted() -> None:
    op = videos(
        poll_interval=timedelta(seconds=30),
        timeout=2,
        max_consecutive_failures=0,
        deferrable=True,
        durable=False,
        retry_on_unknown_create_outcome=True,
        wait_for_completion=True,
        output_path=Path("/data/a.mp4"),
        if_output_exists="overwrite",
        vidgen_conn_id="other",
    )
    assert (op.poll_interval, op.timeout) == (30.0, 2.0)


# -- mapped operators: partial() arguments are checked at parse time ------------------------------------


def test_mapped_bad_request_parameter_is_a_dag_import_error() -> None:
    with DAG("m", schedule=None, start_date=None), pytest.raises(VidgenValidationError, match=r"duration: .*4 to 15"):
        VideosCreateOperator.partial(task_id="create", duration=99).expand(prompt=["a", "b"])


def test_mapped_bad_option_is_a_dag_import_error() -> None:
    with DAG("m", schedule=None, start_date=None), pytest.raises(VidgenValidationError, match="poll_interval: must be"):
        VideosCreateOperator.partial(task_id="create", duration=5, poll_interval="3").expand(prompt=["a"])
    with (
        DAG("m2", schedule=None, start_date=None),
        pytest.raises(VidgenValidationError, match="max_consecutive_failures: must be"),
    ):
        StarVideosCreateOperator.partial(task_id="create", max_consecutive_failures=-1).expand_kwargs([{"prompt": "a"}])
    with DAG("m3", schedule=None, start_date=None), pytest.raises(VidgenValidationError, match="if_exists: must be"):
        VideoDownloadOperator.partial(task_id="save", destination="/data/a.mp4", if_exists="append").expand(
            generation_id=["proj_1"]
        )


def test_mapped_fields_left_to_expand_or_templated_are_not_checked_at_parse() -> None:
    with DAG("m", schedule=None, start_date=None) as dag:
        VideosCreateOperator.partial(task_id="a", duration="{{ params.d }}").expand(prompt=["a"])
        VideosCreateOperator.partial(task_id="b", prompt="x").expand(duration=[5, 6])
        VideosCreateOperator.partial(task_id="c", duration=5).expand_kwargs([{"prompt": "a"}])
        VideoDownloadOperator.partial(task_id="d", destination="/data/{{ ds }}.mp4").expand(generation_id=["p"])
    assert {"a", "b", "c", "d"} <= set(dag.task_dict)


def test_mapped_tasks_writing_one_file_is_a_dag_import_error() -> None:
    # Each mapped task would create (and pay for) a video and save it over the others'.
    with DAG("m", schedule=None, start_date=None), pytest.raises(VidgenValidationError, match="output_path: the same"):
        VideosCreateOperator.partial(task_id="a", duration=5, output_path="/data/a.mp4").expand(prompt=["x", "y"])
    with DAG("m2", schedule=None, start_date=None), pytest.raises(VidgenValidationError, match="destination: the same"):
        VideoDownloadOperator.partial(task_id="b", destination="/data/a.mp4").expand(generation_id=["p1", "p2"])
    with (
        DAG("m3", schedule=None, start_date=None),
        pytest.raises(VidgenValidationError, match=r"output_path: the same .*ti\.map_index"),
    ):
        StarVideosCreateOperator.partial(task_id="c", default_args={"output_path": "s3://b/a.mp4"}).expand(prompt=["x"])


def test_mapped_tasks_with_a_file_each_are_accepted() -> None:
    with DAG("m", schedule=None, start_date=None) as dag:
        VideosCreateOperator.partial(task_id="a", duration=5, output_path="/data/{{ ti.map_index }}.mp4").expand(
            prompt=["x", "y"]
        )
        VideosCreateOperator.partial(task_id="b", duration=5).expand_kwargs(
            [{"prompt": "x", "output_path": "/data/x.mp4"}, {"prompt": "y", "output_path": "/data/y.mp4"}]
        )
        StarVideosCreateOperator.partial(task_id="c", output_path=None).expand(prompt=["x"])
        VideoDownloadOperator.partial(task_id="d").expand(
            destination=["/data/1.mp4", "/data/2.mp4"], generation_id=["p", "q"]
        )
    assert {"a", "b", "c", "d"} <= set(dag.task_dict)


def test_mapped_mistake_is_an_import_error_of_the_dag_file(tmp_path: Path) -> None:
    try:
        from airflow.dag_processing.dagbag import DagBag  # Airflow >= 3.1
    except ImportError:
        from airflow.models.dagbag import DagBag  # type: ignore[no-redef,attr-defined]

    (tmp_path / "mapped_dag.py").write_text(
        textwrap.dedent(
            """
            from airflow.providers.common.compat.sdk import DAG
            from airflow_provider_vidgen.operators.vidgen import VideosCreateOperator

            with DAG("vidgen_bad_mapped", schedule=None, start_date=None):
                VideosCreateOperator.partial(task_id="create", duration=99).expand(prompt=["a", "b"])
            """
        )
    )
    bag = DagBag(dag_folder=str(tmp_path))  # examples are off (conftest)
    assert "vidgen_bad_mapped" not in bag.dags
    (error,) = bag.import_errors.values()
    assert "duration" in error
    assert "4 to 15" in error


# -- VideoDownloadOperator ---------------------------------------------------------------------------

BAD_DOWNLOAD_OPTIONS = [
    ("generation_id", None),
    ("generation_id", ""),
    ("generation_id", "   "),
    ("generation_id", 3),
    ("generation_id", "proj_1\nproj_2"),
    ("destination", None),
    ("destination", ""),
    ("destination", 3),
    ("vidgen_conn_id", None),
    ("vidgen_conn_id", ""),
    ("if_exists", "append"),
    ("if_exists", None),
]


def download(**kwargs: Any) -> VideoDownloadOperator:
    return VideoDownloadOperator(**{"task_id": "save", "generation_id": "proj_1", "destination": "/d/a.mp4", **kwargs})


@pytest.mark.parametrize(("option", "value"), BAD_DOWNLOAD_OPTIONS, ids=ids(BAD_DOWNLOAD_OPTIONS))
def test_each_bad_download_option_is_a_dag_import_error(option: str, value: Any) -> None:
    with pytest.raises(VidgenValidationError, match=rf"{option}: must be"):
        download(**{option: value})


@pytest.mark.parametrize(("option", "value"), BAD_DOWNLOAD_OPTIONS, ids=ids(BAD_DOWNLOAD_OPTIONS))
def test_each_bad_download_option_after_rendering_sends_nothing(
    option: str, value: Any, context: dict[str, Any], emulator_conn: Emulator, tmp_path: Path
) -> None:
    op = download(destination=str(tmp_path / "a.mp4"))
    setattr(op, option, value)
    with pytest.raises(VidgenValidationError, match=rf"{option}: must be"):
        op.execute(context)
    assert emulator_conn.requests == []


def test_download_generation_id_with_blanks_is_normalised(
    context: dict[str, Any], emulator_conn: Emulator, tmp_path: Path
) -> None:
    emulator_conn.queue_timeline(Timeline(queued_for=0, processing_for=0))
    generation_id = VidgenHook().create(VideosRequest.build(model="videos", prompt="p", duration=6))
    op = download(generation_id="{{ var.value.id }}", destination=str(tmp_path / "a.mp4"))
    op.generation_id = f"  {generation_id}\n"  # a Variable or a template with blanks around the id
    manifest = op.execute(context)
    assert manifest["generation_id"] == generation_id
    assert (tmp_path / "a.mp4").read_bytes() == emulator_conn.video_content()
    assert {r.path.rsplit("/", 1)[-1] for r in emulator_conn.requests_to("result")} == {generation_id}
    # The manifest of a destination kept as it is names the id without the blanks too.
    kept = download(generation_id=f"\t{generation_id} ", destination=str(tmp_path / "a.mp4"), if_exists="skip")
    assert kept.execute(context)["generation_id"] == generation_id


def test_a_local_output_path_that_cannot_be_written_fails_before_the_create(
    emulator_conn: Emulator, context: dict[str, Any], tmp_path: Path
) -> None:
    from airflow_provider_vidgen.saving import VidgenDestinationError

    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the folder should be")  # unwritable as a folder, even for root
    op = VideosCreateOperator(
        task_id="t", prompt="a cat", duration=5, output_path=str(blocker / "day" / "video.mp4"), poll_interval=0.1
    )
    with pytest.raises(VidgenDestinationError, match="nothing was created or billed") as info:
        op.execute(context)
    assert isinstance(info.value, AirflowFailException)  # a retry would fail the same way
    assert emulator_conn.creates() == []


def test_the_write_check_of_a_local_output_path_leaves_nothing_behind(
    emulator_conn: Emulator, context: dict[str, Any], tmp_path: Path
) -> None:
    emulator_conn.set_timeline(Timeline(queued_for=0, processing_for=0.1))
    target = tmp_path / "new" / "folder" / "video.mp4"
    op = VideosCreateOperator(task_id="t", prompt="a cat", duration=5, output_path=str(target), poll_interval=0.1)
    op.execute(context)
    assert sorted(p.name for p in target.parent.iterdir()) == ["video.mp4"]
    assert len(emulator_conn.creates()) == 1


def test_the_shared_options_are_documented_once_on_the_base_and_each_operator_documents_its_request() -> None:
    from airflow_provider_vidgen.operators.vidgen import (
        _CREATE_OPTION_RULES,
        StarVideosCreateOperator,
        VideosCreateOperator,
        _VidgenCreateOperator,
    )

    base = _VidgenCreateOperator.__doc__ or ""
    assert all(f":param {name}:" in base for name in _CREATE_OPTION_RULES)
    for operator in (VideosCreateOperator, StarVideosCreateOperator):
        doc = operator.__doc__ or ""
        assert all(f":param {name}:" in doc for name in operator.request_fields)
        assert not any(f":param {name}:" in doc for name in _CREATE_OPTION_RULES)
        assert ":class:`_VidgenCreateOperator`" in doc


def test_backoff_when_late_needs_adaptive_polling() -> None:
    """``poll_backoff_when_late`` acts on what adaptive polling learns: alone it would do nothing."""
    with pytest.raises(VidgenValidationError, match="poll_backoff_when_late: needs adaptive_polling=True"):
        videos(poll_backoff_when_late=True)
    with pytest.raises(VidgenValidationError, match="poll_backoff_when_late: needs adaptive_polling=True"):
        VideosCreateOperator.partial(task_id="t", poll_backoff_when_late=True)
    assert videos(poll_backoff_when_late=True, adaptive_polling=True).poll_backoff_when_late is True
