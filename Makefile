# graflow-async developer commands. `make test` on a fresh machine installs everything it needs.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SYSTEM_PACKAGES := redis-server chromium iproute2 docker.io busybox-static
# The suite mostly waits (on servers, processes, leases): two pytest-xdist workers, one per
# core, take little more than half its time. A module's tests stay on one worker (loadgroup,
# see tests/conftest.py). `make test PYTEST_ARGS=` runs it in one process.
PYTEST_ARGS ?= -n 2 --dist loadgroup

.PHONY: install test demo bench chaos lint clean system-packages

install: $(STAMP)

$(STAMP): pyproject.toml
	@$(MAKE) --no-print-directory system-packages
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[all,dev]'
	touch $(STAMP)

# Installs the Debian packages the tests use when they are missing and we are root.
system-packages:
	@missing=""; for p in $(SYSTEM_PACKAGES); do \
	  dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing:$$missing"; apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else echo "missing system packages:$$missing (run as root or install them)"; fi; \
	fi

test: install
	$(BIN)/ruff check graflow_async tests benchmarks examples
	$(BIN)/ruff format --check graflow_async tests benchmarks examples
	$(BIN)/mypy
	@# pytest exits 5 when it collects no tests: say so plainly instead of a bare failure code.
	$(BIN)/python -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo 'pytest collected no tests'; fi; exit $$rc

demo: install
	$(BIN)/python examples/release_pipeline.py

bench: install
	$(BIN)/python -m benchmarks

# Kills the driver of durable runs at random points (SPEC 10); see benchmarks/chaos.py.
chaos: install
	$(BIN)/python -m benchmarks.chaos

lint: install
	$(BIN)/ruff check graflow_async tests benchmarks examples
	$(BIN)/ruff format --check graflow_async tests benchmarks examples
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .graflow .pytest_cache .mypy_cache .ruff_cache
