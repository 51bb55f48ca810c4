"""The tools around the codec: training and schedule CLIs, evaluation, benchmarks, reports and
releases. The codec never imports them (an import-linter contract in pyproject.toml)."""
