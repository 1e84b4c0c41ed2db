"""The package version, kept apart so that packaging reads it without importing datastream."""

__version__ = "0.1.0"
