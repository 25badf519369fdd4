"""Provider registration: entry point metadata, connection form, and the ``airflow providers`` CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_vidgen import __version__
from airflow_provider_vidgen.get_provider_info import get_provider_info

AIRFLOW = str(Path(sys.executable).parent / "airflow")


def test_entry_point_points_at_get_provider_info() -> None:
    (ep,) = [
        ep for ep in entry_points(group="apache_airflow_provider") if ep.value.startswith("airflow_provider_vidgen")
    ]
    assert ep.load() is get_provider_info


def test_provider_info_matches_airflow_schema() -> None:
    import airflow
    import jsonschema

    schema = json.loads((Path(airflow.__file__).parent / "provider_info.schema.json").read_text())
    info = get_provider_info()
    jsonschema.validate(info, schema)
    assert info["package-name"] == "airflow-provider-vidgen"
    assert info["versions"] == [__version__]
    (conn_type,) = info["connection-types"]
    assert conn_type["connection-type"] == "vidgen"
    assert conn_type["hook-class-name"] == "airflow_provider_vidgen.hooks.vidgen.VidgenHook"
    assert conn_type["hook-name"]
    behaviour = conn_type["ui-field-behaviour"]
    assert set(behaviour["hidden-fields"]) == {"login", "schema", "port"}
    assert behaviour["relabeling"] == {"password": "API key", "host": "Base URL"}
    assert "production" in behaviour["placeholders"]["host"]
    assert "https" in behaviour["placeholders"]["host"]
    assert set(conn_type["conn-fields"]) == {
        "timeout",
        "connect_timeout",
        "max_retries",
        "retry_base_delay",
        "retry_max_delay",
    }
    modules = {m for kind in ("hooks", "operators", "sensors") for entry in info[kind] for m in entry["python-modules"]}
    for module in modules:
        __import__(module)


class _RecordingExtras(dict):  # type: ignore[type-arg]
    """A connection's ``extra_dejson`` that records every key the code reads."""

    def __init__(self) -> None:
        super().__init__()
        self.read: set[str] = set()

    def __bool__(self) -> bool:  # as if some extras were set: ``extra_dejson or {}`` keeps this mapping
        return True

    def get(self, key: Any, default: Any = None) -> Any:
        self.read.add(key)
        return super().get(key, default)

    def __getitem__(self, key: Any) -> Any:
        self.read.add(key)
        return super().__getitem__(key)

    def __contains__(self, key: Any) -> bool:
        self.read.add(key)
        return super().__contains__(key)

    def setdefault(self, key: Any, default: Any = None) -> Any:
        self.read.add(key)
        return super().setdefault(key, default)

    def pop(self, key: Any, *default: Any) -> Any:
        self.read.add(key)
        return super().pop(key, *default)


def test_every_extra_the_hook_reads_is_a_form_field(monkeypatch: pytest.MonkeyPatch) -> None:
    """The extras the hook really reads (recorded while it reads a connection) are all declared form fields."""
    from types import SimpleNamespace

    from airflow_provider_vidgen.hooks.vidgen import VidgenHook

    extras = _RecordingExtras()
    conn = SimpleNamespace(conn_id="c", host="https://api.example.com", password="sk-recording", extra_dejson=extras)
    monkeypatch.setattr(VidgenHook, "get_connection", classmethod(lambda cls, conn_id: conn))
    assert VidgenHook("c").settings.base_url == "https://api.example.com"
    declared = set(get_provider_info()["connection-types"][0]["conn-fields"])
    assert extras.read, "reading the connection recorded no extra"
    assert extras.read - declared == set(), "extras the hook reads that the connection form does not declare"
    assert declared - extras.read == set(), "form fields the hook never reads"


def test_only_the_connection_module_reads_connection_extras() -> None:
    """Every read of a connection's extras goes through ``ConnectionSettings`` (which the test above records)."""
    import ast

    import airflow_provider_vidgen

    package = Path(airflow_provider_vidgen.__file__).parent
    readers = set()
    for path in package.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Attribute) and node.attr in ("extra_dejson", "get_extra", "extra_value"):
                readers.add(path.relative_to(package).as_posix())
    assert readers == {"connection.py"}


def test_get_provider_info_imports_no_airflow() -> None:
    code = (
        "import sys; from airflow_provider_vidgen.get_provider_info import get_provider_info; get_provider_info(); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('airflow', 'requests', 'pydantic', 'aiohttp')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_connection_form_registered_with_providers_manager() -> None:
    from airflow.providers_manager import ProvidersManager

    manager = ProvidersManager()
    assert manager.hooks["vidgen"] is not None
    behaviour = manager.field_behaviours["vidgen"]
    assert set(behaviour["hidden_fields"]) == {"login", "schema", "port"}
    assert behaviour["relabeling"]["password"] == "API key"
    assert "extra__vidgen__timeout" in manager.connection_form_widgets


def _cli_json(*args: str) -> list[dict[str, str]]:
    env = {**os.environ}
    env.pop("AIRFLOW__CORE__UNIT_TEST_MODE", None)
    out = subprocess.run([AIRFLOW, *args, "-o", "json"], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    line = next(line for line in out.stdout.splitlines() if line.startswith("["))
    return json.loads(line)


@pytest.mark.e2e
def test_airflow_providers_cli_lists_package_and_connection_type() -> None:
    packages = {p["package_name"]: p for p in _cli_json("providers", "list")}
    assert packages["airflow-provider-vidgen"]["version"] == __version__
    hooks = {h["connection_type"]: h for h in _cli_json("providers", "hooks")}
    assert hooks["vidgen"]["class"] == "airflow_provider_vidgen.hooks.vidgen.VidgenHook"


def test_dag_parse_imports_no_runtime_machinery() -> None:
    """Importing the operator and sensor modules (every DAG parse) pulls in no async client or trigger code."""
    code = (
        "import sys\n"
        "try:\n    import airflow.sdk\nexcept ImportError:\n    import airflow\n"
        # What any DAG file pulls in anyway (on Airflow 2 that includes object storage).
        "from airflow.providers.common.compat.sdk import BaseOperator, BaseSensorOperator\n"
        "before = set(sys.modules)\n"
        "import airflow_provider_vidgen.operators.vidgen, airflow_provider_vidgen.sensors.vidgen\n"
        "print(sorted(set(sys.modules) - before))\n"
    )
    env = {**os.environ}
    env.pop("AIRFLOW__CORE__UNIT_TEST_MODE", None)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    added = json.loads(out.stdout.strip().splitlines()[-1].replace("'", '"'))
    runtime_only = [
        m
        for m in added
        if m.split(".")[0] in ("aiohttp", "httpx", "yarl", "multidict", "fsspec", "upath", "requests")
        or m.startswith(
            (
                "airflow_provider_vidgen.triggers",
                "airflow_provider_vidgen.async_client",
                "airflow_provider_vidgen.events",
                "airflow_provider_vidgen.testing",
            )
        )
    ]
    assert runtime_only == []
    assert "airflow_provider_vidgen.operators.vidgen" in added
