"""Exploratory probes behind RESULTS.md's choices, each scoring one lever from cached features or maps
(``python -m benchmarks.probes.NAME --help``; README.md lists every command)."""

import statistics


def print_medians(milliseconds: dict[str, list[float]], unit: str, prefix: str = "", digits: int = 1) -> None:
    """One line per variant of a probe timed in alternating rounds: the median, then every round."""
    for name, values in milliseconds.items():
        print(f"{prefix}{name}: {statistics.median(values):.{digits}f} {unit} "
              f"(rounds: {', '.join(f'{v:.{digits}f}' for v in values)})")
