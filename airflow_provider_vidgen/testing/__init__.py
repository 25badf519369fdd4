"""Test support: an emulator of the Videos / StarVideos API (see :mod:`.emulator`).

Importing this package needs ``aiohttp`` (a dependency of the provider); nothing in the operators,
sensor or hook imports it.
"""

from __future__ import annotations

from airflow_provider_vidgen.testing.emulator import DEFAULT_API_KEY, Emulator, Fault, Timeline

__all__ = ["DEFAULT_API_KEY", "Emulator", "Fault", "Timeline"]
