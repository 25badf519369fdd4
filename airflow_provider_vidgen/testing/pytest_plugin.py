"""pytest fixtures: add ``pytest_plugins = ["airflow_provider_vidgen.testing.pytest_plugin"]`` to a conftest."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from airflow_provider_vidgen.testing.emulator import Emulator


@pytest.fixture(scope="session")
def vidgen_emulator_session() -> Iterator[Emulator]:
    """One emulator for the whole session (reset it, or use ``vidgen_emulator``, between tests)."""
    with Emulator() as emulator:
        yield emulator


@pytest.fixture
def vidgen_emulator(vidgen_emulator_session: Emulator) -> Iterator[Emulator]:
    """The session's emulator, reset before the test: no generations, faults or logged requests."""
    vidgen_emulator_session.reset()
    yield vidgen_emulator_session
    vidgen_emulator_session.reset()
