# Two commands for a fresh machine: `make demo` and `make test`.
# torch==2.13.0 resolves to the CPU build on CPU machines; GPU users: see README ("Installing on a GPU machine").
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.mriqa-installed
PIP    := $(PY) -m pip install -q --disable-pip-version-check

.PHONY: demo test install clean

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) "torch==$${MRIQA_TORCH_VERSION:-2.13.0}"
	$(PIP) -e ".[test]"
	$(PIP) --no-deps "fastmri==0.3.0"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/mriqa demo $(DEMO_ARGS)

test: $(STAMP)
	$(PY) -m pytest -q $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) mriqa-demo .pytest_cache
