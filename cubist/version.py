"""The package version, recorded in every result row."""
__version__ = "0.1.0"
