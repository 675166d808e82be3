"""Data-free neural-network compression experiments: Big2Small and baselines, measured on disk."""

__version__ = "0.1.0"
