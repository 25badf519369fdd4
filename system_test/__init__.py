"""The system test: the provider in a real Airflow cluster under faults (``scripts/system-test.sh``)."""
