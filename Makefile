# Everything installs itself: a fresh clone needs only python3 (>= 3.9),
# node (>= 20.19) and npm on PATH.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
NODE_STAMP := tests/servers/node_modules/.installed
PYTEST_ARGS ?=

.PHONY: install node system demo test tox bench lint clean

install: $(STAMP)

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): setup.cfg setup.py | $(PY)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[cli,test,bench]'
	touch $@

# The reference tus server (@tus/server + @tus/file-store), pinned by the lock file.
node: $(NODE_STAMP)

$(NODE_STAMP): tests/servers/package.json tests/servers/package-lock.json
	npm ci --prefix tests/servers --no-audit --no-fund --loglevel=error
	touch $@

# Debian packages the suite runs for real: redis-server (the fleet store and
# Celery's broker). Installed when missing; `make test` runs as root in CI.
system:
	@command -v redis-server >/dev/null || { apt-get update -qq && apt-get install -y -qq redis-server; } \
	  || { echo "make test needs redis-server: apt-get install redis-server"; exit 1; }

demo: $(STAMP)
	$(PY) -m upclient.demo

test: $(STAMP) $(NODE_STAMP) system
	$(PY) -m pytest -q $(PYTEST_ARGS)

# The suite on every Python from 3.9 to 3.13 found on PATH or under pyenv
# (each in its own tox environment; CI runs `make test` on one interpreter).
PYENV_BINS := $(subst $(eval) ,:,$(wildcard $(HOME)/.pyenv/versions/3.*/bin))
tox: $(STAMP) $(NODE_STAMP)
	PATH="$$PATH:$(PYENV_BINS)" $(PY) -m tox run $(TOX_ARGS)

# GNU time measures each client's own peak RSS; Debian's package "time".
bench: $(STAMP) $(NODE_STAMP) system
	@[ -x /usr/bin/time ] || { apt-get update -qq && apt-get install -y -qq time; } \
	  || { echo "make bench needs GNU time (/usr/bin/time): apt-get install time"; exit 1; }
	$(PY) bench/run.py $(BENCH_ARGS)
	$(PY) bench/deadlines.py
	$(PY) bench/download.py
	$(PY) bench/sync.py $(SYNC_BENCH_ARGS)
	$(PY) bench/fleet.py
	$(PY) bench/django_upload.py

lint: $(STAMP)
	$(PY) -m pip install --quiet ruff mypy
	$(PY) -m ruff check upclient tests
	$(PY) -m mypy upclient

clean:
	rm -rf $(VENV) tests/servers/node_modules build dist *.egg-info .pytest_cache
