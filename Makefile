# Two entry points do all set-up on a fresh machine: `make demo` and `make test`.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
RECIPE  ?= recipes/quickstart.yaml

.PHONY: demo test test-slow install lint clean

$(BIN)/python:
	$(PY) -m venv $(VENV)

# open3d needs the system libusb, torchcodec FFmpeg's shared libraries; install them with apt when missing
# and we are root.
.PHONY: sysdeps
sysdeps:
	@if ! ldconfig -p 2>/dev/null | grep -q libusb-1.0; then \
	  if [ "$$(id -u)" = "0" ]; then \
	    (apt-get install -y -q libusb-1.0-0 >/dev/null 2>&1 || \
	     (apt-get update -q >/dev/null && apt-get install -y -q libusb-1.0-0 >/dev/null)) \
	      && echo "installed libusb-1.0-0 (needed by open3d)"; \
	  else echo "warning: libusb-1.0-0 missing and not root; open3d may fail to import"; fi; \
	fi
	@if ! ldconfig -p 2>/dev/null | grep -q libavcodec; then \
	  if [ "$$(id -u)" = "0" ]; then \
	    (apt-get install -y -q --no-install-recommends ffmpeg >/dev/null 2>&1 || \
	     (apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends ffmpeg >/dev/null)) \
	      && echo "installed ffmpeg's libraries (needed by torchcodec, data.backend=torchcodec)"; \
	  else echo "warning: FFmpeg libraries missing and not root; data.backend=torchcodec will not load"; fi; \
	fi

$(STAMP): pyproject.toml | $(BIN)/python
	$(MAKE) --no-print-directory sysdeps
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/mmssl run $(RECIPE)

test: $(STAMP)
	$(BIN)/python -m pytest -q

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

lint: $(STAMP)
	$(BIN)/ruff check mmssl tests benchmarks data_tools

clean:
	rm -rf $(VENV) runs .pytest_cache
