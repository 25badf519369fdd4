"""Provider metadata read by Airflow through the ``apache_airflow_provider`` entry point.

This module is imported by Airflow's providers manager on every process start: it must stay cheap
(no Airflow imports, no hook import).
"""

from __future__ import annotations

from typing import Any


def get_provider_info() -> dict[str, Any]:
    """Describe the provider: package, modules, and the ``vidgen`` connection type and its form."""
    from airflow_provider_vidgen import __version__
    from airflow_provider_vidgen.connection_form import CONN_FIELDS, UI_FIELD_BEHAVIOUR

    return {
        "package-name": "airflow-provider-vidgen",
        "name": "Vidgen (Videos / StarVideos)",
        "description": "Create and await Videos and StarVideos video generations from Airflow.",
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": "Vidgen",
                "external-doc-url": "https://pypi.org/project/airflow-provider-vidgen/",
                "tags": ["service"],
            }
        ],
        "hooks": [{"integration-name": "Vidgen", "python-modules": ["airflow_provider_vidgen.hooks.vidgen"]}],
        "operators": [{"integration-name": "Vidgen", "python-modules": ["airflow_provider_vidgen.operators.vidgen"]}],
        "sensors": [{"integration-name": "Vidgen", "python-modules": ["airflow_provider_vidgen.sensors.vidgen"]}],
        "triggers": [{"integration-name": "Vidgen", "python-modules": ["airflow_provider_vidgen.triggers.vidgen"]}],
        "extra-links": ["airflow_provider_vidgen.links.VideoLink"],
        # `airflow vidgen plan` (Airflow 3.x reads this key; Airflow 2 ignores it)
        "cli": ["airflow_provider_vidgen.cli.get_cli_commands"],
        "connection-types": [
            {
                "connection-type": "vidgen",
                "hook-class-name": "airflow_provider_vidgen.hooks.vidgen.VidgenHook",
                "hook-name": "Vidgen (Videos / StarVideos)",
                "ui-field-behaviour": UI_FIELD_BEHAVIOUR,
                "conn-fields": CONN_FIELDS,
            }
        ],
    }
