# burstwms: `make install`, `make demo`, `make test` (see README.md).
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
export AMQP_URL ?= amqp://guest:guest@127.0.0.1:5672/%2F

.PHONY: install chromium demo test lint broker bench clean

install: $(VENV)/.installed chromium

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[test,demo]'
	touch $@

# The dashboard's browser test drives Debian's chromium through playwright (playwright's
# own browser download does not work here). Installed where missing and apt-get can.
chromium:
	@command -v chromium >/dev/null || { command -v apt-get >/dev/null && \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } \
	  || echo "make: chromium is missing and could not be installed (apt-get install chromium)"

broker: install
	@$(PY) -m services.runtime.broker

demo: install broker
	$(PY) demo/run.py

test: install broker
	$(PY) -m pytest -q

lint: install
	$(VENV)/bin/ruff check services schemas tests demo

bench: install broker
	$(VENV)/bin/burst bench negotiate
	$(VENV)/bin/burst bench bus

clean:
	rm -rf .burst demo/work tests/artifacts
