"""API families: the registry, the lookups, and a third family added as model + parser + descriptor + operator."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import pytest

from airflow_provider_vidgen import families, lineage, metrics, protocol
from airflow_provider_vidgen.durable import request_fingerprint
from airflow_provider_vidgen.exceptions import VidgenUnknownFamilyError
from airflow_provider_vidgen.families import FAMILIES, STARVIDEOS, VIDEOS, family_of, family_of_model
from airflow_provider_vidgen.hooks.vidgen import VidgenHook
from airflow_provider_vidgen.models import StarVideosRequest, VideosRequest, _Request
from airflow_provider_vidgen.operators import vidgen as operators
from airflow_provider_vidgen.testing import Emulator

VIDEO = VideosRequest.build(model="videos", prompt="a cat", duration=5)
STAR = StarVideosRequest.build(model="starvideos_v3", prompt="a cat", duration=5)


class ToyRequest(_Request):
    """A request model of no registered family (sent to the Videos endpoint when registered below)."""

    title: ClassVar[str] = "Toy request"
    rules: ClassVar[dict[str, str]] = {}

    model: Literal["videos"]
    prompt: str
    duration: int

    @property
    def mode(self) -> str:
        return "text-to-video"

    def summary(self) -> str:
        return f"model={self.model} duration={self.duration}s"


def test_each_request_model_has_its_family() -> None:
    assert family_of(VIDEO) is VIDEOS
    assert family_of(VideosRequest) is VIDEOS
    assert family_of(STAR) is STARVIDEOS
    assert family_of(StarVideosRequest) is STARVIDEOS
    assert [family.key for family in FAMILIES] == ["videos", "starvideos"]
    assert (VIDEOS.models, STARVIDEOS.models) == (("videos", "videos_fast"), ("starvideos_v3",))


def test_a_request_of_no_family_is_an_error_not_another_familys_request() -> None:
    toy = ToyRequest(model="videos", prompt="a", duration=5)
    with pytest.raises(VidgenUnknownFamilyError, match="ToyRequest is the request of no API family") as info:
        family_of(toy)
    assert isinstance(info.value, TypeError)
    with pytest.raises(VidgenUnknownFamilyError):
        request_fingerprint(toy)  # type: ignore[arg-type]


def test_the_hook_sends_nothing_for_a_request_of_no_family(emulator_conn: Emulator) -> None:
    hook = VidgenHook()
    with pytest.raises(VidgenUnknownFamilyError):
        hook.create(ToyRequest(model="videos", prompt="a", duration=5))  # type: ignore[arg-type]
    with pytest.raises(
        VidgenUnknownFamilyError, match="A Videos create takes a VideosRequest, not a StarVideosRequest"
    ):
        hook.create_videos(STAR)  # type: ignore[arg-type]
    with pytest.raises(VidgenUnknownFamilyError, match="StarVideos create takes a StarVideosRequest"):
        hook.create_starvideos(VIDEO)  # type: ignore[arg-type]
    assert emulator_conn.requests == []


def test_each_family_creates_at_its_own_endpoint(emulator_conn: Emulator) -> None:
    hook = VidgenHook()
    assert hook.create(VIDEO).startswith("proj_")
    assert hook.create_starvideos(STAR).startswith("video_starvideos_")
    assert [request.path.rsplit("/", 2)[-2] for request in emulator_conn.requests] == ["videos", "starvideos"]


def test_fingerprints_are_those_earlier_versions_stored() -> None:
    # Computed by the release before the families were descriptors: a stored record must still match.
    assert request_fingerprint(VIDEO) == "7598a9bf32086b234c9ca6789fc914a6cf12f2e892dc714d6c470f9d0c43e870"
    assert request_fingerprint(STAR) == "410b2a56d76529db4f852b2c0dd63333084a176247e959cafe806eaf16350d84"


def test_a_model_name_finds_its_family_also_one_added_by_the_api_since() -> None:
    assert family_of_model("videos_fast") is VIDEOS
    assert family_of_model("starvideos_v3") is STARVIDEOS
    assert family_of_model("starvideos_v4") is STARVIDEOS  # a model the API added since
    assert family_of_model("videos_turbo") is VIDEOS
    assert family_of_model("other") is None
    assert family_of_model(None) is None
    assert family_of_model("") is None
    assert (metrics._family_label("starvideos_v4"), metrics._family_label("other")) == ("starvideos", "unknown")


def test_each_create_operator_names_its_family_consistently() -> None:
    create_operators = [operators.VideosCreateOperator, operators.StarVideosCreateOperator]
    assert [operator.family for operator in create_operators] == list(FAMILIES)
    for operator in create_operators:
        family = operator.family
        assert family.operator_name == operator.__name__
        assert set(operator.request_fields) <= set(family.request_class.model_fields)
        assert set(family.input_fields) <= set(operator.request_fields)


def test_lineage_inputs_and_plan_seconds_come_from_the_family() -> None:
    star = operators.StarVideosCreateOperator(
        task_id="s", prompt="p", images=["https://a/1", "https://a/2", "https://a/3"]
    )
    assert lineage._urls(star) == ["https://a/1", "https://a/2"]  # the API uses 2
    videos = operators.VideosCreateOperator(task_id="v", prompt="p", duration=5, reference_images=["https://a/1"] * 3)
    assert lineage._urls(videos) == ["https://a/1"]
    assert lineage._urls(operators.VideoDownloadOperator(task_id="d", generation_id="g", destination="/tmp/x")) == []
    assert STARVIDEOS.seconds(StarVideosRequest.build(model="starvideos_v3", prompt="p")) == 5
    assert VIDEOS.seconds(VIDEO) == 5


def test_a_third_family_is_a_model_a_parser_a_descriptor_and_an_operator(
    context: dict[str, Any], emulator_conn: Emulator, monkeypatch: pytest.MonkeyPatch, log_text: Any
) -> None:
    parsed: list[int] = []

    def parse_toy_create(status: int, body: str, secret: str | None) -> str:
        parsed.append(status)
        return protocol.parse_videos_create(status, body, secret)

    toy = families.Family(
        key="toy",
        display_name="Toy",
        create_path=protocol.VIDEOS_CREATE_PATH,  # the emulator's Videos endpoint answers it
        request_class=ToyRequest,  # type: ignore[arg-type]
        parse_create=parse_toy_create,
        operator_name="ToyCreateOperator",
        input_fields=(),
    )

    class ToyCreateOperator(operators._VidgenCreateOperator):
        template_fields = ("prompt", "vidgen_conn_id", "output_path")
        family = toy
        request_fields = ("model", "prompt", "duration")

        def __init__(self, *, prompt: str, duration: int, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.prompt, self.duration, self.model = prompt, duration, "videos"
            self._validate_if_static()

    monkeypatch.setattr(families, "FAMILIES", (*FAMILIES, toy))
    generation_id = ToyCreateOperator(task_id="t", prompt="a toy", duration=5).execute(context)
    assert context["ti"].xcom == {"generation_id": generation_id}
    assert parsed == [200]
    assert [(r.method, r.path.rsplit("/", 2)[-2], r.body) for r in emulator_conn.requests] == [
        ("POST", "videos", {"model": "videos", "prompt": "a toy", "duration": 5})
    ]
    assert f"Created Toy generation {generation_id}" in log_text()
    fingerprint = request_fingerprint(ToyRequest(model="videos", prompt="a toy", duration=5))  # type: ignore[arg-type]
    assert fingerprint != request_fingerprint(VideosRequest.build(model="videos", prompt="a toy", duration=5))
