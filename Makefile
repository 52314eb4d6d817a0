# The two entry points of the README. Each sets up .venv itself (idempotent) first.
PY := .venv/bin/python

.PHONY: demo test setup
setup:
	@bash scripts/setup_env.sh

demo: setup
	$(PY) scripts/demo.py --out out/demo

test: setup
	$(PY) -m pytest
