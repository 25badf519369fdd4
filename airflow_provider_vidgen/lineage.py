"""OpenLineage of the create operators and ``VideoDownloadOperator`` (with ``apache-airflow-providers-openlineage``).

The OpenLineage provider calls ``get_openlineage_facets_on_complete`` / ``_on_failure`` of a task after it
ran; the operators answer with :func:`operator_lineage`. Nothing here is imported before then, so the
provider works the same without OpenLineage installed.

- outputs: the saved object (``output_path``, ``destination``), named per the OpenLineage naming spec:
  namespace ``file`` and the absolute path for local files, ``s3://bucket`` / ``gs://bucket`` / ... and
  the key for object stores;
- inputs: the reference images and videos and the frame images, each URL a dataset (namespace
  ``https://host``, name the path: the query string and any user info are left out, as they may carry
  a signature);
- the run facet ``vidgen``: generation id, family, model, mode, requested and actual duration, the
  prompt's SHA-256 and length (never the prompt, never the key, never a video URL).
"""

from __future__ import annotations

import hashlib
from functools import cache
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

from airflow_provider_vidgen.families import family_of_model

#: The key of the run facet in the event's ``run.facets``.
RUN_FACET_NAME = "vidgen"
#: Attribute of the operator where what the task learnt (id, result, manifest) is kept for the lineage.
_NOTES = "_vidgen_lineage"
#: URI schemes named ``scheme://bucket`` (a spelling of the same store is mapped to the spec's scheme).
_SCHEMES = {"s3a": "s3", "s3n": "s3", "gcs": "gs"}
#: Azure stores, named ``scheme://{container}@{account host}`` by the spec.
_AZURE = ("abfs", "abfss", "wasb", "wasbs")


def note(operator: Any, **values: Any) -> None:
    """Keep what a task learnt (``generation_id``, ``result``, ``manifest``) for its lineage."""
    notes = operator.__dict__.setdefault(_NOTES, {})
    notes.update({key: value for key, value in values.items() if value is not None})


def dataset_name(uri: str) -> tuple[str, str]:
    """``(namespace, name)`` of ``uri`` per the OpenLineage naming spec."""
    parts = urlsplit(str(uri))
    scheme = parts.scheme.lower()
    if scheme in ("", "file", "local"):
        path = unquote(parts.path if scheme else str(uri))
        return "file", path if path.startswith("/") else "/" + path
    scheme = _SCHEMES.get(scheme, scheme)
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    if scheme in _AZURE and parts.username:
        # ``{container}@{account}...``: the container is part of the namespace (never a password)
        host = f"{unquote(parts.username)}@{host}"
    name = unquote(parts.path).lstrip("/")
    if scheme in ("http", "https"):
        return f"{scheme}://{host}", "/" + name
    return f"{scheme}://{host}", name


def without_password(uri: str) -> str:
    """``uri`` without the password of its user info (``ftp://user:pw@host/a`` -> ``ftp://user@host/a``)."""
    parts = urlsplit(str(uri))
    if parts.password is None:
        return str(uri)
    user, _, _ = parts.netloc.rpartition("@")[0].partition(":")
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{user}@{host}" if user else host))


def prompt_digest(prompt: Any) -> tuple[str | None, int | None]:
    """SHA-256 (hex) and length in characters of the prompt; the prompt itself is never reported."""
    if not isinstance(prompt, str):
        return None, None
    return hashlib.sha256(prompt.encode("utf-8")).hexdigest(), len(prompt)


@cache
def _facet_class() -> type:
    import attr
    from airflow.providers.common.compat.openlineage.facet import RunFacet

    @attr.define
    class VidgenRunFacet(RunFacet):
        """What a generation was: its id, family, model, mode, durations and the prompt's hash and length."""

        # camelCase, as OpenLineage's own facets
        generationId: str | None = attr.field(default=None)
        family: str | None = attr.field(default=None)
        model: str | None = attr.field(default=None)
        mode: str | None = attr.field(default=None)
        duration: int | None = attr.field(default=None)
        actualDuration: float | None = attr.field(default=None)
        promptSha256: str | None = attr.field(default=None)
        promptLength: int | None = attr.field(default=None)
        uri: str | None = attr.field(default=None)
        bytes: int | None = attr.field(default=None)
        sha256: str | None = attr.field(default=None)

    return VidgenRunFacet


def _urls(operator: Any) -> list[str]:
    """The input URLs of a create operator's request (its family's input fields), as many as the API uses."""
    family = getattr(operator, "family", None)
    if family is None:
        return []
    urls: list[str] = []
    for field in family.input_fields:
        value = getattr(operator, field, None)
        for url in [value] if isinstance(value, str) else value if isinstance(value, (list, tuple)) else []:
            if isinstance(url, str) and url.strip() and url not in urls:
                urls.append(url.strip())
    return urls if family.max_input_urls is None else urls[: family.max_input_urls]


def _mode(operator: Any) -> str | None:
    family = getattr(operator, "family", None)
    if family is None:
        return None
    try:
        return str(
            family.request_class.build(**{name: getattr(operator, name) for name in operator.request_fields}).mode
        )
    except Exception:  # the parameters were not valid: no mode to report
        return None


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _planned_uri(destination: Any) -> str | None:
    if not destination:
        return None
    from airflow_provider_vidgen.saving import as_storage_path

    try:
        return str(as_storage_path(destination))
    except Exception:  # not a destination the saver could use: nothing was written there
        return None


def operator_lineage(operator: Any, destination: Any = None) -> Any:
    """The ``OperatorLineage`` of a create operator or ``VideoDownloadOperator`` after it ran (or failed).

    :param operator: The task's operator (rendered), with what :func:`note` kept during the run.
    :param destination: Where the video is (or was to be) saved, when no manifest says where it is.
    """
    from airflow.providers.common.compat.openlineage.facet import Dataset
    from airflow.providers.openlineage.extractors import OperatorLineage

    notes: dict[str, Any] = operator.__dict__.get(_NOTES, {})
    manifest: dict[str, Any] = notes.get("manifest") or {}
    result = notes.get("result")
    uri = manifest.get("uri") or _planned_uri(destination)
    outputs = [Dataset(*dataset_name(uri))] if uri else []
    inputs = [Dataset(*dataset_name(url)) for url in _urls(operator)]
    model = manifest.get("model") or (result.model if result is not None else None) or getattr(operator, "model", None)
    family = getattr(operator, "family", None) or family_of_model(model)
    actual = manifest.get("actual_duration")
    if actual is None and result is not None:
        actual = result.actual_duration
    digest, length = prompt_digest(getattr(operator, "prompt", None))
    facet = _facet_class()(
        generationId=notes.get("generation_id")
        or manifest.get("generation_id")
        or getattr(operator, "generation_id", None),
        family=family.display_name if family is not None else None,
        model=model,
        mode=_mode(operator),
        duration=_int(getattr(operator, "duration", None)),
        actualDuration=actual,
        promptSha256=digest,
        promptLength=length,
        uri=without_password(uri) if uri else None,
        bytes=manifest.get("bytes"),
        sha256=manifest.get("sha256"),
    )
    return OperatorLineage(inputs=inputs, outputs=outputs, run_facets={RUN_FACET_NAME: facet})
