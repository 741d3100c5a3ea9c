# The README's two commands: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.mmrec-installed

.PHONY: install demo test clean

install: $(STAMP)

# torch/torchvision resolve to the releases already on this machine (a pip constraint caps them).
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -e ".[cpu,dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/mmrec demo --out demo-out

test: $(STAMP)
	$(PY) -m pytest -q

clean:
	rm -rf demo-out build dist *.egg-info .pytest_cache
