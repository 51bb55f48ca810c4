# Reproducible results. `make results` regenerates RESULTS.md and docs/results/*.png from real runs.
PYTHON ?= python
KODAK ?= ../shared/data/kodak

.PHONY: results results-md evaluate bench cli-doc serve-shot

# Kodak evaluation (skipped with a message if $(KODAK) is absent) + benchmark + RESULTS.md
results:
	$(PYTHON) -m slimfast.tools.report --kodak $(KODAK)

# Rewrite RESULTS.md from the JSON already in out/ (no measuring)
results-md:
	$(PYTHON) -m slimfast.tools.report --from-json

evaluate:
	$(PYTHON) -m slimfast.tools.evaluate $(KODAK) --out out/eval --anchors

bench:
	$(PYTHON) -m slimfast.tools.bench --out out/bench

# Regenerate docs/cli.md, a transcript of real slimfast commands
cli-doc:
	$(PYTHON) scripts/cli_transcript.py

# Regenerate docs/serve.png, the README's screenshot of the comparison page (needs chromium)
serve-shot:
	SLIMFAST_SCREENSHOT=docs/serve.png $(PYTHON) -m pytest -q -p no:cacheprovider tests/test_serve_browser.py
