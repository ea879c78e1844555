"""The measurements behind RESULTS.md: scripts run as modules from the repository root (``python -m benchmarks.run
DATA``), sharing ``harness`` (isolated runs, whole-file outputs, exit codes) and ``render`` (tables and plots)."""
