# burstwms: `make install`, `make demo`, `make test` (see README.md).
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
export AMQP_URL ?= amqp://guest:guest@127.0.0.1:5672/%2F

.PHONY: install demo test lint broker bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[test]'
	touch $@

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
	rm -rf .burst demo/work
