"""Data sets used by the examples and benchmarks."""

from .bars import QUADRANTS, make_bars, quadrant_groups

__all__ = ["QUADRANTS", "make_bars", "quadrant_groups"]
