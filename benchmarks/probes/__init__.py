"""Exploratory probes behind RESULTS.md's choices, each scoring one lever from cached features or maps
(``python -m benchmarks.probes.NAME --help``; README.md lists every command)."""
