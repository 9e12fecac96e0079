"""cdp's benchmarks: each module measures one thing and prints its figures (benchmarks/RESULTS.md
records them). Run one from the repository root as a module, `python -m benchmarks.<name>`;
the pieces they share are in benchmarks/harness.py."""
