"""The one Airflow import that ``airflow.providers.common.compat.sdk`` lacks on Python 3.10.

common-compat >= 1.21 (which maps ``mask_secret``) needs Python >= 3.11; on 3.10 the newest is 1.20.
"""

from __future__ import annotations

try:
    from airflow.sdk.log import mask_secret  # Airflow 3
except ImportError:  # Airflow 2
    from airflow.utils.log.secrets_masker import mask_secret  # type: ignore[no-redef,unused-ignore]

__all__ = ["mask_secret"]
