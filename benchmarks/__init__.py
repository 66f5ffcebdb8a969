"""Speed measurements: `make bench` or `python -m benchmarks.run --help`."""
