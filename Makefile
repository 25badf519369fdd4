.PHONY: test demo lock
test:  ## ruff + mypy + pytest on Airflow 3.3.2 and 2.11.2
	scripts/test.sh
demo:  ## run an example DAG end to end against the emulator
	scripts/demo.sh
lock:  ## re-pin constraints/airflow-*.txt
	scripts/lock.sh
