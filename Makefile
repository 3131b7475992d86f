# The two commands of a new user on a fresh Debian 12 machine, as root:
#   make demo   installs everything, then brings up examples/demo.yaml (3 teams, synthetic data)
#   make test   installs everything, then runs the test suite against real PostgreSQL
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
# PostgreSQL; Debian's python3 for the team environment; zstd for .sql.zst dumps; R with its Jupyter kernel and
# database drivers; sshd for the tunnel tests; chromium for the dashboard's browser tests (Playwright drives it).
APT_PACKAGES := postgresql-15 postgresql-client-15 python3-venv python3-dev zstd \
	r-base-core r-cran-irkernel r-cran-dbi r-cran-rpostgresql openssh-client openssh-server \
	chromium fonts-dejavu-core
PYTEST_ARGS ?=

.PHONY: setup system venv demo demo-down test lint bench bench-load bench-push bench-restore clean

setup: system venv

system:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	command -v npm >/dev/null || missing="$$missing npm"; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	/usr/bin/python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

DEMO_PATIENTS ?= 200

demo: setup examples/data/mimic-iv/SHA256SUMS.txt examples/data/mimic-iv-ed/SHA256SUMS.txt
	$(VENV)/bin/datathon up -c examples/demo.yaml --yes

examples/data/%/SHA256SUMS.txt: | venv
	$(VENV)/bin/datathon data synth $* --patients $(DEMO_PATIENTS) --seed 42 --out examples/data/$*

demo-down: venv
	$(VENV)/bin/datathon down -c examples/demo.yaml --yes --no-archive   # the demo holds no work worth keeping

bench-load: setup
	$(PY) benchmarks/load.py

bench-push: setup
	$(PY) benchmarks/push.py

bench-restore: setup
	$(PY) benchmarks/restore.py

test: setup
	$(VENV)/bin/lint-imports --no-cache   # the architecture (pyproject.toml): a sideways import fails here
	$(VENV)/bin/pytest $(PYTEST_ARGS)

bench: setup
	$(PY) benchmarks/provision.py

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info
