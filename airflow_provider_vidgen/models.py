"""Typed requests and results of the Videos and StarVideos APIs (pydantic v2).

Request models check every rule of the API that a client can check before anything is sent.
Python field names are snake_case; ``to_wire()`` produces the JSON body with the documented
wire names (``lastFrameImage``, ``referenceImages``, ``referenceVideos``) and omits unset fields.
"""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Callable, Mapping
from typing import Annotated, Any, ClassVar, Literal, NamedTuple
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    model_validator,
)

from airflow_provider_vidgen.exceptions import VidgenValidationError

#: Statuses documented for the result endpoint. Anything else is "unknown" and never success.
STATUS_QUEUED = "queued"
STATUS_PROCESSING = "processing"
STATUS_COMPLETED = "completed"
STATUS_FAILED = "failed"
IN_PROGRESS_STATUSES = frozenset({STATUS_QUEUED, STATUS_PROCESSING})
TERMINAL_STATUSES = frozenset({STATUS_COMPLETED, STATUS_FAILED})

VIDEOS_PROMPT_MAX_CHARS = 1500
VIDEOS_DURATION_RANGE = (4, 15)
STARVIDEOS_DURATION_RANGE = (3, 15)
MAX_REFERENCE_IMAGES = 4
MAX_REFERENCE_VIDEOS = 3
MAX_STARVIDEOS_IMAGES = 2


def _strip_blanks(value: Any) -> Any:
    # Surrounding blanks (a pasted URL, a rendered template's newline) are dropped once, here: the
    # stripped URL is what is checked, sent and fingerprinted.
    return value.strip() if isinstance(value, str) else value


def _http_url(value: str) -> str:
    for position, char in enumerate(value):
        # urlsplit silently removes tabs and newlines, so they are looked for before it runs.
        if unicodedata.category(char) == "Cc":
            raise ValueError(f"must not contain control characters (found {char!r} at position {position})")
    parts = urlsplit(value)
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        raise ValueError("must be an http(s) URL with a host")
    return value


def _whole_number(value: Any) -> Any:
    # pydantic's lax int accepts True and 5.0; a duration is a whole number of seconds, given as
    # an int or a string of digits (what Jinja renders), nothing else.
    if isinstance(value, bool):
        raise ValueError("must be a whole number of seconds, not a boolean")
    if isinstance(value, float):
        raise ValueError("must be a whole number of seconds, not a float")
    if isinstance(value, str):
        stripped = value.strip()
        if not stripped.lstrip("+-").isdigit():
            raise ValueError("must be a whole number of seconds")
        return int(stripped)
    return value


def _non_empty(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty")
    return value


def _at_most_chars(limit: int) -> Callable[[str], str]:
    def check(value: str) -> str:
        if len(value) > limit:
            raise ValueError(f"must have at most {limit} characters")
        return value

    return check


def _empty_list_is_none(value: Any) -> Any:
    # An empty list means "no media": omit the field rather than send [].
    if isinstance(value, (list, tuple)) and len(value) == 0:
        return None
    if isinstance(value, tuple):
        return list(value)
    return value


HttpUrlStr = Annotated[str, Field(strict=True), BeforeValidator(_strip_blanks), AfterValidator(_http_url)]
Prompt = Annotated[str, Field(strict=True), AfterValidator(_non_empty)]
Seconds = Annotated[int, BeforeValidator(_whole_number)]


def _given(value: Any) -> bool:
    """Whether a parameter is set (an empty media list means "not set", as on the wire)."""
    return value is not None and not (isinstance(value, (list, tuple)) and len(value) == 0)


class CrossFieldRule(NamedTuple):
    """A rule across parameters: the ``fields`` it involves and a ``check`` of their values.

    ``check`` receives a mapping of parameter values (validated ones, or the raw ones when checking
    at DAG parse) and returns the problem, or ``None``.
    """

    fields: tuple[str, ...]
    check: Callable[[Mapping[str, Any]], str | None]


def _both_or_neither(first: str, second: str) -> CrossFieldRule:
    def check(values: Mapping[str, Any]) -> str | None:
        if _given(values.get(first)) != _given(values.get(second)):
            got = first if _given(values.get(first)) else second
            return f"{first} and {second}: first/last frame mode needs both or neither (got only {got})"
        return None

    return CrossFieldRule((first, second), check)


def _not_together(frame: str, reference: str) -> CrossFieldRule:
    def check(values: Mapping[str, Any]) -> str | None:
        if _given(values.get(frame)) and _given(values.get(reference)):
            return (
                f"{frame} cannot be combined with {reference} (first/last frame mode excludes reference material mode)"
            )
        return None

    return CrossFieldRule((frame, reference), check)


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    #: Name used in error messages.
    title: ClassVar[str]
    #: The API's rule for each parameter, quoted in validation errors.
    rules: ClassVar[dict[str, str]]
    #: The API's rules across parameters, each checked at DAG parse once all of its fields are known.
    cross_field_rules: ClassVar[tuple[CrossFieldRule, ...]] = ()

    @model_validator(mode="after")
    def _check_cross_field_rules(self) -> Any:
        problems = self.cross_field_problems({name: getattr(self, name) for name in type(self).model_fields})
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @classmethod
    def cross_field_problems(
        cls, values: Mapping[str, Any], unknown: set[str] | frozenset[str] = frozenset()
    ) -> list[str]:
        """The problems of every rule across fields that involves none of the ``unknown`` fields."""
        problems = []
        for rule in cls.cross_field_rules:
            if unknown.isdisjoint(rule.fields):
                problem = rule.check(values)
                if problem is not None:
                    problems.append(problem)
        return problems

    def to_wire(self) -> dict[str, Any]:
        """Return the JSON body as the API expects it: documented names, unset fields omitted."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)

    @classmethod
    def build(cls, **params: Any) -> Any:
        """Validate ``params`` and return the request; raise :class:`VidgenValidationError` otherwise."""
        try:
            return cls(**params)
        except ValidationError as err:
            raise VidgenValidationError.from_pydantic(cls.title, err, cls.rules) from None

    @classmethod
    def check_known(cls, params: dict[str, Any], unknown: set[str]) -> None:
        """Validate what is known before run time: ignore problems of the ``unknown`` (templated) fields.

        Each rule across fields (first/last frame, mode exclusivity) is checked whenever none of the
        fields *it* involves is unknown, whatever the other fields are.

        :raises VidgenValidationError: a known parameter breaks a rule.
        """
        errors: list[Mapping[str, Any]] = []
        try:
            cls(**params)
        except ValidationError as err:
            # Errors without a location come from the rules across fields, checked below on their own.
            errors = [item for item in err.errors(include_url=False) if item["loc"] and item["loc"][0] not in unknown]
        errors += [
            {"type": "value_error", "loc": (), "msg": problem, "input": None}
            for problem in cls.cross_field_problems(params, unknown)
        ]
        if errors:
            raise VidgenValidationError.from_errors(cls.title, errors, cls.rules) from None


class VideosRequest(_Request):
    """Body of ``POST /v1/videos/videos``.

    :param model: ``videos`` (standard) or ``videos_fast`` (fast).
    :param prompt: What to generate; non-empty, at most 1500 characters.
    :param duration: Seconds of video, a whole number from 4 to 15.
    :param ratio: ``16:9`` or ``9:16``.
    :param resolution: ``720p`` (the only value today).
    :param image: First-frame image URL; only together with ``last_frame_image``.
    :param last_frame_image: Last-frame image URL; only together with ``image``.
    :param reference_images: Up to 4 reference image URLs.
    :param reference_videos: Up to 3 reference video URLs.
    """

    title = "Videos request"
    rules = {
        "model": "videos or videos_fast",
        "prompt": f"non-empty, at most {VIDEOS_PROMPT_MAX_CHARS} characters",
        "duration": f"whole seconds from {VIDEOS_DURATION_RANGE[0]} to {VIDEOS_DURATION_RANGE[1]}",
        "ratio": "16:9 or 9:16",
        "resolution": "720p",
        "image": "http(s) URL; only together with last_frame_image",
        "last_frame_image": "http(s) URL; only together with image",
        "reference_images": f"at most {MAX_REFERENCE_IMAGES} http(s) URLs",
        "reference_videos": f"at most {MAX_REFERENCE_VIDEOS} http(s) URLs",
    }

    cross_field_rules = (
        _both_or_neither("image", "last_frame_image"),
        _not_together("image", "reference_images"),
        _not_together("image", "reference_videos"),
        _not_together("last_frame_image", "reference_images"),
        _not_together("last_frame_image", "reference_videos"),
    )

    model: Literal["videos", "videos_fast"]
    prompt: Annotated[Prompt, AfterValidator(_at_most_chars(VIDEOS_PROMPT_MAX_CHARS))]
    duration: Annotated[Seconds, Field(ge=VIDEOS_DURATION_RANGE[0], le=VIDEOS_DURATION_RANGE[1])]
    ratio: Literal["16:9", "9:16"] | None = None
    resolution: Literal["720p"] | None = None
    image: HttpUrlStr | None = None
    last_frame_image: HttpUrlStr | None = Field(default=None, serialization_alias="lastFrameImage")
    reference_images: Annotated[
        Annotated[list[HttpUrlStr], Field(max_length=MAX_REFERENCE_IMAGES)] | None,
        BeforeValidator(_empty_list_is_none),
    ] = Field(default=None, serialization_alias="referenceImages")
    reference_videos: Annotated[
        Annotated[list[HttpUrlStr], Field(max_length=MAX_REFERENCE_VIDEOS)] | None,
        BeforeValidator(_empty_list_is_none),
    ] = Field(default=None, serialization_alias="referenceVideos")

    @property
    def mode(self) -> str:
        """The generation mode these parameters select."""
        if self.image is not None:
            return "first-last-frame"
        if self.reference_images or self.reference_videos:
            return "reference"
        return "text-to-video"

    def summary(self) -> str:
        """One log line describing the request; no secrets, no full prompt."""
        parts = [
            f"model={self.model}",
            f"mode={self.mode}",
            f"duration={self.duration}s",
            f"ratio={self.ratio or '16:9'}",
            f"resolution={self.resolution or '720p'}",
        ]
        if self.reference_images:
            parts.append(f"reference_images={len(self.reference_images)}")
        if self.reference_videos:
            parts.append(f"reference_videos={len(self.reference_videos)}")
        parts.append(f"prompt_chars={len(self.prompt)}")
        return " ".join(parts)


class StarVideosRequest(_Request):
    """Body of ``POST /v1/starvideos/videos``.

    :param model: ``starvideos_v3`` (the only value today).
    :param prompt: What to generate; non-empty.
    :param duration: Seconds of video, a whole number from 3 to 15 (API default 5).
    :param ratio: ``16:9`` or ``9:16``.
    :param images: 0 images: text-to-video; 1: single image; 2: first/last frame. The API uses only
        the first 2: more are accepted (each must still be an http(s) URL), and only the first 2 are
        kept and sent; :attr:`ignored_images` says how many were left out.
    """

    title = "StarVideos request"
    rules = {
        "model": "starvideos_v3",
        "prompt": "non-empty",
        "duration": f"whole seconds from {STARVIDEOS_DURATION_RANGE[0]} to {STARVIDEOS_DURATION_RANGE[1]}",
        "ratio": "16:9 or 9:16",
        "images": (
            f"http(s) URLs (0: text, 1: single image, 2: first/last frame); "
            f"only the first {MAX_STARVIDEOS_IMAGES} are used"
        ),
    }

    model: Literal["starvideos_v3"]
    prompt: Prompt
    duration: Annotated[Seconds, Field(ge=STARVIDEOS_DURATION_RANGE[0], le=STARVIDEOS_DURATION_RANGE[1])] | None = None
    ratio: Literal["16:9", "9:16"] | None = None
    images: Annotated[list[HttpUrlStr] | None, BeforeValidator(_empty_list_is_none)] = None

    _ignored_images: int = PrivateAttr(default=0)

    @model_validator(mode="after")
    def _keep_images_that_take_effect(self) -> StarVideosRequest:
        # "If more than 2 images are provided, only the first 2 take effect": the request holds (and
        # sends) exactly those, so what is sent, fingerprinted and summarised is what the server uses.
        if self.images is not None and len(self.images) > MAX_STARVIDEOS_IMAGES:
            self._ignored_images = len(self.images) - MAX_STARVIDEOS_IMAGES
            self.__dict__["images"] = self.images[:MAX_STARVIDEOS_IMAGES]  # frozen model: set once, here
        return self

    @property
    def ignored_images(self) -> int:
        """How many images were given beyond the first 2 (not sent: the API would ignore them)."""
        return self._ignored_images

    @property
    def mode(self) -> str:
        """The generation mode these parameters select."""
        return {0: "text-to-video", 1: "single-image", 2: "first-last-frame"}[len(self.images or [])]

    def summary(self) -> str:
        """One log line describing the request; no secrets, no full prompt."""
        return (
            f"model={self.model} mode={self.mode} duration={self.duration or 5}s "
            f"ratio={self.ratio or '16:9'} prompt_chars={len(self.prompt)}"
        )


def _text_id(value: Any) -> Any:
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


#: ``created`` beyond this is no unix time (the year 36812): a malformed answer, not a number to compute with.
_MAX_UNIX_SECONDS = 2**40


def _unix_seconds(value: Any) -> Any:
    if isinstance(value, float):
        if not math.isfinite(value):  # int() would raise OverflowError, which pydantic does not wrap
            raise ValueError(f"created must be a finite number of unix seconds, got {value!r}")
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool) and not -_MAX_UNIX_SECONDS < value < _MAX_UNIX_SECONDS:
        raise ValueError("created is out of the range of unix times")
    return value


def _error_text(value: Any) -> Any:
    # Documented as a string; an object such as {"message": ...} is reduced to its message.
    if isinstance(value, dict):
        return str(value.get("message") or value.get("msg") or value)
    if value is not None and not isinstance(value, str):
        return str(value)
    return value


class GenerationResult(BaseModel):
    """Answer of ``GET /v1/result/{id}``.

    ``status`` is kept as the API sent it; only ``completed`` counts as success and only
    ``failed`` as failure. Unknown extra fields are tolerated and ignored.
    """

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    id: Annotated[str, BeforeValidator(_text_id)]
    status: str
    object: str | None = None
    created: Annotated[int | None, BeforeValidator(_unix_seconds)] = None
    model: str | None = None
    video_url: str | None = None
    actual_duration: float | None = Field(default=None, alias="actualDuration")
    error: Annotated[str | None, BeforeValidator(_error_text)] = None

    @property
    def is_completed(self) -> bool:
        """True only for the documented ``completed`` status."""
        return self.status == STATUS_COMPLETED

    @property
    def is_failed(self) -> bool:
        """True only for the documented ``failed`` status."""
        return self.status == STATUS_FAILED

    @property
    def is_known_status(self) -> bool:
        """Whether ``status`` is one of the four documented values."""
        return self.status in IN_PROGRESS_STATUSES or self.status in TERMINAL_STATUSES

    def to_xcom(self) -> dict[str, Any]:
        """JSON-safe dict pushed to XCom: ``id, status, model, created, video_url, actual_duration, error``."""
        return {
            "id": self.id,
            "status": self.status,
            "model": self.model,
            "created": self.created,
            "video_url": self.video_url,
            "actual_duration": self.actual_duration,
            "error": self.error,
        }
