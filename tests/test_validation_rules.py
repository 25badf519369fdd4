"""Validation to the letter of the API docs, through the operators: what is checked at DAG parse, what
is sent on the wire, what is logged (emulator on loopback)."""

from __future__ import annotations

from typing import Any

import pytest

from airflow_provider_vidgen.exceptions import VidgenValidationError
from airflow_provider_vidgen.models import StarVideosRequest, VideosRequest
from airflow_provider_vidgen.operators.vidgen import StarVideosCreateOperator, VideosCreateOperator
from airflow_provider_vidgen.testing import Emulator

URL = "https://example.com/a.png"

# -- rules across fields at parse: each one whenever all the fields it involves are known -----------


@pytest.mark.parametrize(
    ("templated", "kwargs", "words"),
    [
        ("prompt", {"image": URL}, "needs both or neither"),
        ("duration", {"last_frame_image": URL}, "needs both or neither"),
        ("prompt", {"image": URL, "last_frame_image": URL, "reference_images": [URL]}, "cannot be combined"),
        ("duration", {"image": URL, "last_frame_image": URL, "reference_videos": [URL]}, "cannot be combined"),
        # A templated media field leaves the rules it is not part of checkable.
        (
            "image",
            {"image": "{{ params.first }}", "last_frame_image": URL, "reference_images": [URL]},
            "last_frame_image cannot be combined with reference_images",
        ),
        ("reference_videos", {"image": URL, "reference_videos": ["{{ params.v }}"]}, "needs both or neither"),
    ],
)
def test_cross_field_rule_checked_at_parse_when_its_fields_are_known(
    templated: str, kwargs: dict[str, Any], words: str
) -> None:
    kwargs = {"prompt": "a cat", "duration": 5, **kwargs}
    if templated in ("prompt", "duration"):
        kwargs[templated] = "{{ params." + templated + " }}"
    with pytest.raises(VidgenValidationError, match=words) as info:
        VideosCreateOperator(task_id="t", **kwargs)
    assert f"{templated}:" not in str(info.value)  # the templated field's own value waits for run time


@pytest.mark.parametrize(
    "kwargs",
    [
        {"image": "{{ params.first }}"},  # image may render to None: the pair rule waits
        {"last_frame_image": "{{ params.last }}", "image": URL},
        {"image": "{{ params.f }}", "last_frame_image": "{{ params.l }}", "reference_images": [URL]},
        {"reference_images": "{{ params.refs }}", "image": URL, "last_frame_image": URL},
    ],
)
def test_cross_field_rule_with_a_templated_field_waits_for_run_time(kwargs: dict[str, Any]) -> None:
    VideosCreateOperator(task_id="t", prompt="{{ ds }}", duration=5, **kwargs)


def test_check_known_reports_field_and_cross_field_problems_together() -> None:
    with pytest.raises(VidgenValidationError) as info:
        VideosRequest.check_known(
            {"model": "videos", "prompt": "{{ ds }}", "duration": 99, "image": URL, "last_frame_image": None},
            {"prompt"},
        )
    message = str(info.value)
    assert "duration: must be less than or equal to 15" in message
    assert "needs both or neither (got only image)" in message
    assert "prompt" not in message


def test_check_known_and_build_agree_when_nothing_is_templated() -> None:
    params = {"model": "videos", "prompt": "p", "duration": 5, "image": URL, "reference_videos": [URL]}
    with pytest.raises(VidgenValidationError) as built:
        VideosRequest.build(**params)
    with pytest.raises(VidgenValidationError) as parsed:
        VideosRequest.check_known(params, set())
    assert str(built.value) == str(parsed.value)


# -- StarVideos: more than 2 images is valid input --------------------------------------------------


def test_starvideos_more_than_2_images_is_not_an_import_error() -> None:
    StarVideosCreateOperator(task_id="t", prompt="cat", images=[URL, URL, URL])


def test_starvideos_sends_only_the_first_2_images_and_warns(
    context: dict[str, Any], emulator_conn: Emulator, log_text: Any
) -> None:
    images = [f"{URL}?n={n}" for n in range(4)]
    op = StarVideosCreateOperator(task_id="t", prompt="cat", images=images)
    generation_id = op.execute(context)
    assert generation_id
    [create] = emulator_conn.creates()
    assert create.body["images"] == images[:2]
    logged = log_text()
    assert "only the first 2 images: 2 more given, ignored and not sent" in logged


def test_starvideos_two_images_no_warning(context: dict[str, Any], emulator_conn: Emulator, log_text: Any) -> None:
    op = StarVideosCreateOperator(task_id="t", prompt="cat", images=[URL, URL])
    op.execute(context)
    assert emulator_conn.creates()[0].body["images"] == [URL, URL]
    assert "ignored" not in log_text()


# -- media URLs: blanks stripped where values enter, control characters rejected ---------------------


def test_rendered_url_with_a_trailing_newline_is_sent_stripped(
    context: dict[str, Any], emulator_conn: Emulator
) -> None:
    op = StarVideosCreateOperator(task_id="t", prompt="cat", images=["{{ params.first }}"])
    op.images = [f"  {URL}\n"]  # what rendering a template file with a final newline produces
    op.execute(context)
    assert emulator_conn.creates()[0].body["images"] == [URL]


def test_url_with_an_embedded_newline_fails_before_anything_is_sent(
    context: dict[str, Any], emulator_conn: Emulator
) -> None:
    with pytest.raises(VidgenValidationError, match=r"images\[0\]: must not contain control characters"):
        StarVideosCreateOperator(task_id="t", prompt="cat", images=["https://example.com/a\n.png"])
    op = VideosCreateOperator(task_id="t", prompt="cat", duration=5, reference_images=["{{ params.ref }}"])
    op.reference_images = ["https://example.com/a\t.png"]
    with pytest.raises(VidgenValidationError, match=r"reference_images\[0\]: must not contain control characters"):
        op.execute(context)
    assert emulator_conn.requests == []


def test_starvideos_request_ignored_images_survives_copy() -> None:
    request = StarVideosRequest.build(model="starvideos_v3", prompt="p", images=[URL] * 3)
    assert request.model_copy().ignored_images == 1
