# tinysam-mobile: the two commands a fresh machine needs are `make demo` and `make test`.
PY := .venv/bin/python
PIP := .venv/bin/pip
STAMP := .venv/.installed

.PHONY: demo test test-slow lint bench clean

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	python3 -m venv .venv
	$(PIP) install -q -r requirements.txt -r requirements-dev.txt
	$(PIP) install -q --no-deps --no-build-isolation -e .
	$(PIP) check
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(PY) cli.py demo --out demo_out --overwrite

test: $(STAMP)
	$(PY) -m pytest -q

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow

lint: $(STAMP)
	.venv/bin/ruff check .

bench: $(STAMP)
	$(PY) cli.py bench

clean:
	rm -rf demo_out .pytest_cache
