"""Every client-checkable rule of the API, both sides of each boundary, and the wire format."""

from __future__ import annotations

from typing import Any

import pytest
from airflow.providers.common.compat.sdk import AirflowFailException

from airflow_provider_vidgen.exceptions import VidgenValidationError
from airflow_provider_vidgen.models import GenerationResult, StarVideosRequest, VideosRequest

BASE = {"model": "videos", "prompt": "a cat", "duration": 5}
STAR = {"model": "starvideos_v3", "prompt": "a cat"}
URL = "https://example.com/a.png"


def videos(**changes: Any) -> VideosRequest:
    params = {**BASE, **changes}
    return VideosRequest.build(**{k: v for k, v in params.items() if v is not ...})


def star(**changes: Any) -> StarVideosRequest:
    return StarVideosRequest.build(**{**STAR, **changes})


def rejects(build: Any, parameter: str, rule_words: str, **changes: Any) -> str:
    with pytest.raises(VidgenValidationError) as info:
        build(**changes)
    message = str(info.value)
    assert parameter in message, message
    assert rule_words in message, message
    return message


# -- Videos --------------------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["videos", "videos_fast"])
def test_videos_models_accepted(model: str) -> None:
    assert videos(model=model).model == model


@pytest.mark.parametrize("model", ["video", "starvideos_v3", "VIDEOS", ""])
def test_videos_other_models_rejected(model: str) -> None:
    rejects(videos, "model", "videos_fast", model=model)


def test_videos_model_required() -> None:
    rejects(videos, "model", "is required", model=...)


@pytest.mark.parametrize("length", [1, 1500])
def test_videos_prompt_length_accepted(length: int) -> None:
    assert len(videos(prompt="x" * length).prompt) == length


def test_videos_prompt_over_1500_rejected() -> None:
    rejects(videos, "prompt", "1500", prompt="x" * 1501)


def test_videos_prompt_length_error_says_characters_and_quotes_no_prompt() -> None:
    prompt = "a secret storyboard " * 80  # 1600 characters
    message = rejects(videos, "prompt", "must have at most 1500 characters (got 1600 characters)", prompt=prompt)
    assert "items" not in message
    assert "secret" not in message


@pytest.mark.parametrize(
    ("prompt", "got"), [("   ", "3 characters"), ("\n\t", "2 characters"), (123, "a value of type int")]
)
def test_no_prompt_error_quotes_the_prompt(prompt: Any, got: str) -> None:
    for build in (videos, star):
        message = rejects(build, "prompt", f"(got {got})", prompt=prompt)
        assert repr(prompt) not in message


@pytest.mark.parametrize("prompt", ["", "   ", "\n\t"])
def test_videos_prompt_empty_rejected(prompt: str) -> None:
    rejects(videos, "prompt", "must not be empty", prompt=prompt)


def test_videos_prompt_must_be_text() -> None:
    rejects(videos, "prompt", "string", prompt=123)


@pytest.mark.parametrize("duration", [4, 15, "4", "15", " 10 "])
def test_videos_duration_bounds_accepted(duration: Any) -> None:
    assert videos(duration=duration).duration == int(str(duration))


@pytest.mark.parametrize("duration", [3, 16, 0, -5, "3", "16"])
def test_videos_duration_out_of_range_rejected(duration: Any) -> None:
    rejects(videos, "duration", "4 to 15", duration=duration)


@pytest.mark.parametrize("duration", [5.5, 5.0, True, "five", "5.0", None])
def test_videos_duration_must_be_whole_seconds(duration: Any) -> None:
    rejects(videos, "duration", "4 to 15", duration=duration)


def test_videos_duration_required() -> None:
    rejects(videos, "duration", "is required", duration=...)


@pytest.mark.parametrize("ratio", ["16:9", "9:16"])
def test_ratio_accepted(ratio: str) -> None:
    assert videos(ratio=ratio).ratio == ratio
    assert star(ratio=ratio).ratio == ratio


@pytest.mark.parametrize("ratio", ["4:3", "1:1", "16x9", ""])
def test_ratio_rejected(ratio: str) -> None:
    rejects(videos, "ratio", "16:9 or 9:16", ratio=ratio)
    rejects(star, "ratio", "16:9 or 9:16", ratio=ratio)


def test_resolution() -> None:
    assert videos(resolution="720p").resolution == "720p"
    rejects(videos, "resolution", "720p", resolution="1080p")


def test_first_last_frame_both_accepted() -> None:
    request = videos(image=URL, last_frame_image=URL + "?2")
    assert request.mode == "first-last-frame"


@pytest.mark.parametrize("given", ["image", "last_frame_image"])
def test_first_last_frame_needs_both(given: str) -> None:
    message = rejects(videos, "last_frame_image", "both or neither", **{given: URL})
    assert "image" in message


@pytest.mark.parametrize("count", [0, 1, 4])
def test_reference_images_up_to_4(count: int) -> None:
    request = videos(reference_images=[URL] * count)
    assert (request.reference_images or []) == [URL] * count


def test_reference_images_5_rejected() -> None:
    rejects(videos, "reference_images", "at most 4", reference_images=[URL] * 5)


@pytest.mark.parametrize("count", [1, 3])
def test_reference_videos_up_to_3(count: int) -> None:
    assert videos(reference_videos=[URL] * count).reference_videos == [URL] * count


def test_reference_videos_4_rejected() -> None:
    rejects(videos, "reference_videos", "at most 3", reference_videos=[URL] * 4)


def test_reference_mode_mixed_images_and_videos() -> None:
    assert videos(reference_images=[URL], reference_videos=[URL]).mode == "reference"


@pytest.mark.parametrize("reference", ["reference_images", "reference_videos"])
def test_first_last_frame_not_combined_with_references(reference: str) -> None:
    rejects(videos, reference, "cannot be combined", image=URL, last_frame_image=URL, **{reference: [URL]})


@pytest.mark.parametrize("bad", ["ftp://host/x.png", "example.com/x.png", "file:///etc/passwd", "https://", ""])
def test_urls_must_be_http(bad: str) -> None:
    rejects(videos, "image", "http(s)", image=bad, last_frame_image=URL)
    rejects(videos, "last_frame_image", "http(s)", image=URL, last_frame_image=bad)
    rejects(videos, "reference_images[0]", "http(s)", reference_images=[bad])
    rejects(videos, "reference_videos[1]", "http(s)", reference_videos=[URL, bad])
    rejects(star, "images[0]", "http(s)", images=[bad])


@pytest.mark.parametrize("blank", [" ", "\n", "\t", " \r\n\t "])
def test_urls_surrounding_blanks_are_stripped_before_checking_and_sending(blank: str) -> None:
    padded = blank + URL + blank
    request = videos(image=padded, last_frame_image=padded, ratio="9:16")
    assert request.image == request.last_frame_image == URL
    assert videos(reference_images=[padded], reference_videos=[padded]).to_wire()["referenceImages"] == [URL]
    assert videos(reference_videos=[padded]).to_wire()["referenceVideos"] == [URL]
    assert star(images=[padded, padded]).to_wire()["images"] == [URL, URL]


@pytest.mark.parametrize("char", ["\n", "\t", "\r", "\x00", "\x1b", "\x7f", "\x85"])
def test_urls_with_control_characters_rejected_naming_the_parameter(char: str) -> None:
    bad = f"https://example.com/a{char}b.png"
    found = f"found {char!r} at position 21"
    rejects(videos, "image:", found, image=bad, last_frame_image=URL)
    rejects(videos, "last_frame_image:", found, image=URL, last_frame_image=bad)
    rejects(videos, "reference_images[1]:", found, reference_images=[URL, bad])
    rejects(videos, "reference_videos[0]:", found, reference_videos=[bad])
    rejects(star, "images[1]:", found, images=[URL, bad])
    rejects(star, "images[3]:", found, images=[URL, URL, URL, bad])


def test_url_errors_quote_no_query_string() -> None:
    # A presigned URL's query is a signature.
    message = rejects(videos, "reference_images[0]", "http(s)", reference_images=["ftp://host/a.png?X-Signature=abc"])
    assert "abc" not in message
    assert "ftp://host/a.png?..." in message


def test_unknown_parameter_rejected() -> None:
    rejects(videos, "lastFrameImage", "not a parameter", lastFrameImage=URL)


def test_validation_error_fails_without_retries() -> None:
    with pytest.raises(AirflowFailException):
        videos(duration=99)


def test_videos_wire_format_uses_documented_names_and_omits_unset() -> None:
    assert videos().to_wire() == BASE
    wire = videos(ratio="9:16", resolution="720p", image=URL, last_frame_image=URL + "?b").to_wire()
    assert wire == {**BASE, "ratio": "9:16", "resolution": "720p", "image": URL, "lastFrameImage": URL + "?b"}
    wire = videos(reference_images=[URL], reference_videos=(URL,)).to_wire()
    assert wire == {**BASE, "referenceImages": [URL], "referenceVideos": [URL]}
    assert videos(duration="7").to_wire()["duration"] == 7


def test_empty_media_lists_are_omitted() -> None:
    assert videos(reference_images=[], reference_videos=[]).to_wire() == BASE
    assert star(images=[]).to_wire() == STAR


# -- StarVideos ----------------------------------------------------------------------------------


def test_starvideos_model() -> None:
    assert star().model == "starvideos_v3"
    rejects(star, "model", "starvideos_v3", model="videos")


@pytest.mark.parametrize("duration", [3, 15, "3"])
def test_starvideos_duration_bounds_accepted(duration: Any) -> None:
    assert star(duration=duration).duration == int(duration)


@pytest.mark.parametrize("duration", [2, 16, 4.5])
def test_starvideos_duration_rejected(duration: Any) -> None:
    rejects(star, "duration", "3 to 15", duration=duration)


def test_starvideos_duration_optional() -> None:
    assert "duration" not in star().to_wire()


def test_starvideos_prompt_non_empty_but_unbounded() -> None:
    rejects(star, "prompt", "must not be empty", prompt=" ")
    assert len(star(prompt="x" * 5000).prompt) == 5000


@pytest.mark.parametrize(("count", "mode"), [(0, "text-to-video"), (1, "single-image"), (2, "first-last-frame")])
def test_starvideos_images_modes(count: int, mode: str) -> None:
    request = star(images=[URL] * count)
    assert request.mode == mode
    assert request.to_wire().get("images", []) == [URL] * count


@pytest.mark.parametrize("count", [3, 5])
def test_starvideos_more_than_2_images_accepted_and_only_the_first_2_sent(count: int) -> None:
    # "If more than 2 images are provided, only the first 2 take effect": valid input.
    urls = [f"{URL}?n={n}" for n in range(count)]
    request = star(images=urls)
    assert request.images == urls[:2]
    assert request.to_wire()["images"] == urls[:2]
    assert request.mode == "first-last-frame"
    assert request.ignored_images == count - 2


@pytest.mark.parametrize("count", [0, 1, 2])
def test_starvideos_up_to_2_images_nothing_ignored(count: int) -> None:
    assert star(images=[URL] * count).ignored_images == 0


def test_starvideos_ignored_images_must_still_be_urls() -> None:
    # The API types the whole array as URLs: a broken entry is a mistake even past the first 2.
    rejects(star, "images[2]", "http(s)", images=[URL, URL, "not a url"])


def test_starvideos_same_effective_images_same_wire_body() -> None:
    assert star(images=[URL, URL + "?2", URL + "?3"]).to_wire() == star(images=[URL, URL + "?2"]).to_wire()


# -- results ---------------------------------------------------------------------------------------


def test_result_parses_documented_fields_and_tolerates_extras() -> None:
    result = GenerationResult.model_validate(
        {
            "id": "proj_1",
            "object": "video",
            "created": 1761635478,
            "model": "videos",
            "status": "completed",
            "video_url": "https://cdn/x.mp4",
            "actualDuration": 5,
            "error": None,
            "something_new": {"nested": True},
        }
    )
    assert result.is_completed
    assert result.to_xcom() == {
        "id": "proj_1",
        "status": "completed",
        "model": "videos",
        "created": 1761635478,
        "video_url": "https://cdn/x.mp4",
        "actual_duration": 5,
        "error": None,
    }


@pytest.mark.parametrize("status", ["COMPLETED", "complete", "succeeded", "done", ""])
def test_unknown_status_is_never_completed(status: str) -> None:
    result = GenerationResult(id="x", status=status, video_url="https://cdn/x.mp4")
    assert not result.is_completed
    assert not result.is_known_status
