# Huying — the two commands a new machine needs: `make run` and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
PY     := $(VENV)/bin/python
HUYING := $(VENV)/bin/huying
STAMP  := $(VENV)/.installed-stamp

.PHONY: run test lint bench install assets clean

$(STAMP): setup.cfg pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

## assets: the UI's npm packages (bpmn-js, dmn-js, ECharts, axe-core) from the registry into web/ui/static/vendor
ASSETS := web/ui/static/vendor/.stamp
$(ASSETS): package.json package-lock.json tools/copy_assets.py
	@if command -v npm >/dev/null 2>&1; then \
		npm ci --no-audit --no-fund --loglevel=error && $(PYTHON) tools/copy_assets.py; \
	else \
		echo "warning: npm not found; the UI runs without its diagram, charts and browser-test assets"; \
	fi

assets: $(ASSETS)

## run: create the venv, migrate, load the demo district if the database is empty, serve on :5000
run: install assets
	$(HUYING) db upgrade
	$(HUYING) demo load --if-empty
	$(HUYING) serve --host 127.0.0.1 --port 5000

## test: the whole suite (SQLite; PostgreSQL too when HUYING_TEST_DATABASE_URL is set), plus lint
test: install assets
	$(PY) -m pytest -q -n 2 --dist loadfile
	$(MAKE) --no-print-directory lint

lint: install
	$(VENV)/bin/ruff check engine workflows web config tests bench
	$(VENV)/bin/lint-imports

## bench: benchmarks (not part of `make test`): ticket lifecycles, then the SLA scheduler (PostgreSQL)
bench: install
	$(PY) bench/lifecycle.py
	$(PY) bench/sla.py
	$(PY) bench/http_api.py

clean:
	rm -rf $(VENV) instance .pytest_cache node_modules web/ui/static/vendor
