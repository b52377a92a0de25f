"""The package version (its own module, so the lowest layer can read it without a cycle)."""

__version__ = "0.2.0"
