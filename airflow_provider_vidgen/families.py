"""The API families (Videos, StarVideos): everything that differs between them, one descriptor each.

A family is a request model (:mod:`airflow_provider_vidgen.models`), the parser of its create answer
(:mod:`airflow_provider_vidgen.protocol`), a :class:`Family` registered in :data:`FAMILIES`, and a
create operator that names it (``family = ...``). The hook, the durable fingerprint, the metrics,
the lineage, ``airflow vidgen plan`` and the Videos page read the family from here; a request of no
registered family is an error (:class:`VidgenUnknownFamilyError`), never sent to another endpoint.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, get_args

from airflow_provider_vidgen import protocol
from airflow_provider_vidgen.exceptions import VidgenUnknownFamilyError
from airflow_provider_vidgen.models import MAX_STARVIDEOS_IMAGES, StarVideosRequest, VideosRequest

#: A validated create request of any family (a new family adds its request model here).
CreateRequest = VideosRequest | StarVideosRequest

#: ``parse_create(status, body, secret)``: the generation id of a successful create answer.
CreateParser = Callable[[int, str, str | None], str]


@dataclass(frozen=True)
class Family:
    """One API family: its create endpoint, request model and create answer.

    :param key: Lower-case label of the family in request fingerprints and metric names
        (``videos``). Fingerprints stored by earlier tries contain it: never change it.
    :param display_name: The family's name for people (``Videos``): logs, lineage, plan, Videos page.
    :param create_path: Path of the create endpoint (``POST``).
    :param request_class: The request model; its ``model`` field lists the family's models.
    :param parse_create: Reads the create answer into the generation id (see :mod:`protocol`).
    :param operator_name: Class name of the family's create operator (how the Videos page finds
        the videos it saved).
    :param input_fields: Request fields that hold input URLs (images, videos), for lineage.
    :param max_input_urls: How many input URLs the API uses (the request sends no more); ``None``: all.
    :param default_duration: Seconds of video when the request names no duration (the API's
        default); ``None`` when the duration is required.
    """

    key: str
    display_name: str
    create_path: str
    request_class: type[CreateRequest]
    parse_create: CreateParser
    operator_name: str
    input_fields: tuple[str, ...]
    max_input_urls: int | None = None
    default_duration: int | None = None

    @property
    def models(self) -> tuple[str, ...]:
        """The models of this family, as the request model allows them."""
        return tuple(str(model) for model in get_args(self.request_class.model_fields["model"].annotation))

    def seconds(self, request: CreateRequest) -> int | None:
        """Seconds of video ``request`` asks for (the family's default when it names none)."""
        return request.duration if request.duration is not None else self.default_duration


VIDEOS = Family(
    key="videos",
    display_name="Videos",
    create_path=protocol.VIDEOS_CREATE_PATH,
    request_class=VideosRequest,
    parse_create=protocol.parse_videos_create,
    operator_name="VideosCreateOperator",
    input_fields=("image", "last_frame_image", "reference_images", "reference_videos"),
)
STARVIDEOS = Family(
    key="starvideos",
    display_name="StarVideos",
    create_path=protocol.STARVIDEOS_CREATE_PATH,
    request_class=StarVideosRequest,
    parse_create=protocol.parse_starvideos_create,
    operator_name="StarVideosCreateOperator",
    input_fields=("images",),
    max_input_urls=MAX_STARVIDEOS_IMAGES,
    default_duration=5,
)

#: Every family, in the order they are listed (a new family is added here).
FAMILIES: tuple[Family, ...] = (VIDEOS, STARVIDEOS)


def family_of(request: Any) -> Family:
    """The family of a request (an instance or a request class).

    :raises VidgenUnknownFamilyError: ``request`` is not of a registered family's request model.
    """
    request_type = request if isinstance(request, type) else type(request)
    for family in FAMILIES:
        if issubclass(request_type, family.request_class):
            return family
    raise VidgenUnknownFamilyError(
        f"{request_type.__name__} is the request of no API family (known: "
        f"{', '.join(family.request_class.__name__ for family in FAMILIES)}); nothing was sent"
    )


def family_of_model(model: Any) -> Family | None:
    """The family a model name belongs to, ``None`` when none does.

    A model the family lists, else the family whose ``key`` the name starts with (the longest such
    key), so a model the API added since is still counted under its family.
    """
    if not isinstance(model, str) or not model:
        return None
    for family in FAMILIES:
        if model in family.models:
            return family
    prefixed = [family for family in FAMILIES if model.startswith(family.key)]
    return max(prefixed, key=lambda family: len(family.key)) if prefixed else None


__all__ = [
    "FAMILIES",
    "STARVIDEOS",
    "VIDEOS",
    "CreateParser",
    "CreateRequest",
    "Family",
    "family_of",
    "family_of_model",
]
