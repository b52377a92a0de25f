"""Data sets used by the examples and benchmarks."""

from .bars import QUADRANTS, bars_data, bars_structure, make_bars, quadrant_groups

__all__ = ["QUADRANTS", "bars_data", "bars_structure", "make_bars", "quadrant_groups"]
