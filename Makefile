# The two set-up commands of the README. Both build .venv first (quick when it is already there).
PY := .venv/bin/python

.PHONY: env demo test lint quickstart
env:
	bash tools/setup_env.sh

demo: env
	$(PY) tools/demo.py

test: env lint
	$(PY) -m pytest -q tests

# ruff (pyflakes, pycodestyle, isort at 120 columns: ruff.toml) and the import-layer contract (.importlinter)
lint: env
	$(PY) -m ruff check .
	PYTHONPATH=$(CURDIR) .venv/bin/lint-imports --no-cache

# one-command smoke test: tiny ADE20K + COCO data, random-weight checkpoints, tools/test.py on a Segmenter (mIoU)
# and a Mask2Former (PQ, box / mask AP); seconds, no download
quickstart: env
	$(PY) tools/quickstart.py
