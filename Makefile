# The two set-up commands of the README. Both build .venv first (quick when it is already there).
PY := .venv/bin/python

.PHONY: env demo test quickstart
env:
	bash tools/setup_env.sh

demo: env
	$(PY) tools/demo.py

test: env
	$(PY) -m pytest -q tests

# one-command smoke test: tiny ADE20K + COCO data, random-weight checkpoints, tools/test.py on a Segmenter (mIoU)
# and a Mask2Former (PQ, box / mask AP); seconds, no download
quickstart: env
	$(PY) tools/quickstart.py
