"""The "Video" operator extra link: from a task to its generation's entry on the Videos page.

On Airflow 3 the link opens the Videos page of the API server (``/vidgen/``, served by the
provider's plugin) filtered on the task's generation id. On Airflow 2 (no plugin pages) it points to
the saved object's URI when the task saved one, else it is empty. The link never carries the
temporary ``video_url``.

Cheap to import (loaded with the operators on every DAG parse): XCom is imported when a link is built.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from airflow.providers.common.compat.sdk import BaseOperatorLink

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import BaseOperator, TaskInstanceKey

#: Where the plugin's FastAPI app is mounted on the API server.
PAGE_PREFIX = "/vidgen"


def _airflow_3() -> bool:
    from airflow import __version__

    return int(__version__.split(".", 1)[0]) >= 3


def page_url(generation_id: str, base_url: str | None = None) -> str:
    """The Videos page filtered on one generation (absolute when the API server's base URL is set)."""
    if base_url is None:
        from airflow.providers.common.compat.sdk import conf

        base_url = conf.get("api", "base_url", fallback="") or ""
    base = base_url.rstrip("/")
    return f"{base}{PAGE_PREFIX}/?{urlencode({'generation_id': generation_id})}"


def _xcom(ti_key: TaskInstanceKey, key: str) -> Any:
    from airflow.providers.common.compat.sdk import XCom

    return XCom.get_value(ti_key=ti_key, key=key)


def _generation_and_uri(operator: BaseOperator, ti_key: TaskInstanceKey) -> tuple[str | None, str | None]:
    """The task's generation id and saved URI, from its own XComs (what a finished try recorded)."""
    from airflow_provider_vidgen.operators.vidgen import XCOM_GENERATION_ID, XCOM_OUTPUT, VideoDownloadOperator

    if isinstance(operator, VideoDownloadOperator):
        manifest = _xcom(ti_key, "return_value")
        if isinstance(manifest, dict):
            return _text(manifest.get("generation_id")), _text(manifest.get("uri"))
        return None, None
    generation_id = _text(_xcom(ti_key, XCOM_GENERATION_ID))
    output = _xcom(ti_key, XCOM_OUTPUT)
    uri = _text(output.get("uri")) if isinstance(output, dict) else None
    if generation_id is None:
        # The sensor: its result (return_value) names the generation; a create skipped on an
        # existing output has only the manifest.
        value = _xcom(ti_key, "return_value")
        if isinstance(value, dict):
            generation_id = _text(value.get("id"))
        elif isinstance(output, dict):
            generation_id = _text(output.get("generation_id"))
    return generation_id, uri


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


class VideoLink(BaseOperatorLink):
    """Operator extra link "Video"."""

    name = "Video"

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        generation_id, uri = _generation_and_uri(operator, ti_key)
        if _airflow_3():
            return page_url(generation_id) if generation_id else ""
        return _linkable(uri) if uri else ""


def _linkable(uri: str) -> str:
    """``uri`` as a link: without the password of any user info, and never a script or inline document."""
    from airflow_provider_vidgen.lineage import without_password

    # browsers drop blanks and control characters anywhere in a URL ("java\tscript:" is "javascript:")
    cleaned = "".join(char for char in uri if ord(char) > 0x20)
    scheme = cleaned.split(":", 1)[0].lower() if ":" in cleaned else ""
    if scheme in ("javascript", "data", "vbscript", "blob"):
        return ""
    return without_password(uri)


__all__ = ["PAGE_PREFIX", "VideoLink", "page_url"]
