# The README's two commands: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.mmrec-installed

.PHONY: install demo test clean speech-tools browser

install: $(STAMP)

# torch/torchvision resolve to the releases already on this machine (a pip constraint caps them).
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -e ".[cpu,dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/mmrec demo --out demo-out

# espeak-ng speaks the sentences the whisper-ct2 test encodes; installed when root can (CI), else that test skips.
speech-tools:
	@command -v espeak-ng >/dev/null || [ "$$(id -u)" != 0 ] || ! command -v apt-get >/dev/null || \
	{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq espeak-ng >/dev/null; } || \
	echo "espeak-ng not installed: the whisper-ct2 speech test will skip"

# headless Chromium and its driver for the search page's browser test (tests/index/test_search_page.py)
browser:
	@{ command -v chromium >/dev/null && command -v chromedriver >/dev/null; } || [ "$$(id -u)" != 0 ] || ! command -v apt-get >/dev/null || \
	{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; } || \
	echo "chromium not installed: the search page's browser test will skip"

# Tests run in a shuffled order (pytest-randomly); make test pins the order's seed so CI is repeatable,
# `make test TEST_SEED=N` (or plain pytest, a new seed each run) checks another order.
TEST_SEED ?= 101

test: $(STAMP) speech-tools browser
	$(PY) -m pytest -q -p randomly --randomly-seed=$(TEST_SEED)

clean:
	rm -rf demo-out build dist *.egg-info .pytest_cache
