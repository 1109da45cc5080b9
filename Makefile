# The two commands of the README: `make demo` and `make test`. Both create .venv when it is
# missing and install the project into it (quick when already installed).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.pixelmill-installed
ENGINE ?= local
PYTEST_ARGS ?=

.PHONY: demo test install lint bench clean

# constraints.txt pins the versions the suite was last run with: pip resolves instantly
# instead of backtracking through the botocore/aiobotocore/moto version space.
$(STAMP): pyproject.toml setup.py constraints.txt src/pixelmill/codecs/_jpegyuv.c
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -c constraints.txt -e '.[all,test]'
	@$(PY) -c "from pixelmill.codecs import planes_available as ok; ok() or print('note: the JPEG planes extension (src/pixelmill/codecs/_jpegyuv.c) was not built: it needs a C compiler and the libjpeg headers (Debian: libjpeg62-turbo-dev). JPEGs are decoded to RGB. To build it once they are there: rm $(STAMP) && make install')"
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(PY) -m pixelmill.demo --engine $(ENGINE)

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks

clean:
	rm -rf demo-out bench-out .pytest_cache
