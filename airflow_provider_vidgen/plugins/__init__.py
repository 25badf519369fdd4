"""The provider's Airflow plugin: the "Videos" page of the Airflow 3 UI.

Registered through the ``airflow.plugins`` entry point. On Airflow 3 it adds a FastAPI app to the
API server (mounted at ``/vidgen``) and an external view in the UI's navigation that shows it. On
Airflow 2 the plugin is empty (the "Video" extra link then points to the saved object's URI).
"""

from __future__ import annotations

from typing import Any

from airflow import __version__ as _airflow_version
from airflow.plugins_manager import AirflowPlugin

from airflow_provider_vidgen.links import PAGE_PREFIX

AIRFLOW_3 = int(_airflow_version.split(".", 1)[0]) >= 3


def _fastapi_apps() -> list[dict[str, Any]]:
    from airflow_provider_vidgen.plugins.videos_app import create_app

    return [{"app": create_app(), "url_prefix": PAGE_PREFIX, "name": "Vidgen videos"}]


def _external_views() -> list[dict[str, Any]]:
    return [
        {
            "name": "Videos",
            "href": f"{PAGE_PREFIX}/",
            "destination": "nav",
            "url_route": "vidgen-videos",
            "nav_top_level": True,
        }
    ]


class VidgenPlugin(AirflowPlugin):
    """The Videos page (Airflow 3 only)."""

    name = "vidgen"
    fastapi_apps = _fastapi_apps() if AIRFLOW_3 else []
    external_views = _external_views() if AIRFLOW_3 else []


__all__ = ["VidgenPlugin"]
