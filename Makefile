# Huying — the two commands a new machine needs: `make run` and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
PY     := $(VENV)/bin/python
HUYING := $(VENV)/bin/huying
STAMP  := $(VENV)/.installed-stamp

.PHONY: run test lint bench install clean

$(STAMP): setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

## run: create the venv, migrate, load the demo district if the database is empty, serve on :5000
run: install
	$(HUYING) db upgrade
	$(HUYING) demo load --if-empty
	$(HUYING) serve --host 127.0.0.1 --port 5000

## test: the whole suite (SQLite; PostgreSQL too when HUYING_TEST_DATABASE_URL is set), plus lint
test: install
	$(PY) -m pytest -q
	$(MAKE) --no-print-directory lint

lint: install
	$(VENV)/bin/ruff check engine workflows web config tests bench
	$(VENV)/bin/lint-imports

## bench: benchmarks (not part of `make test`): ticket lifecycles, then the SLA scheduler (PostgreSQL)
bench: install
	$(PY) bench/lifecycle.py
	$(PY) bench/sla.py
	$(PY) bench/http.py

clean:
	rm -rf $(VENV) instance .pytest_cache
