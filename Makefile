# mensa: `make` (or `make verilog`) writes Verilog for the default config into build/;
# `make test` passes the suite. Both set up the virtual environment themselves.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
CONFIG ?= pascal
JOBS   ?= 2

.PHONY: all verilog test test-all bench lint clean distclean

all: verilog

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "mensa needs Python 3.11 or newer")'
	@if [ ! -x $(BIN)/python ]; then \
	  $(PYTHON) -m venv $(VENV) 2>/dev/null || { rm -rf $(VENV); $(PYTHON) -m venv --without-pip $(VENV) && \
	    $(PYTHON) -m pip --python $(BIN)/python install -q pip; }; \
	fi
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	@touch $@

verilog: $(STAMP)
	$(BIN)/mensa verilog --config $(CONFIG) --out build/verilog

test: $(STAMP)
	$(BIN)/pytest -n $(JOBS) -q

test-all: $(STAMP)
	$(BIN)/pytest -n $(JOBS) -q -m ""

bench: $(STAMP)
	$(BIN)/python -m pip install -q -e '.[test,bench]'
	for b in bench/*.py; do $(BIN)/python $$b || exit 1; done

clean:
	rm -rf build bench/out

distclean: clean
	rm -rf $(VENV)
