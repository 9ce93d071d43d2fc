.PHONY: install up test test-fast lint bench
install:
	bash deploy/install.sh
up:
	keel up
test:
	python3 -m pytest -q
test-fast:
	python3 -m pytest -q -m "not slow"
lint:
	ruff check . && ruff format --check . && lint-imports
bench:
	python3 bench/serving.py
