"""Data-free neural-network compression experiments: Big2Small and baselines, measured on disk.

The Python API (`compress`, `save`, `load`) lives in big2small.api; it is imported on first use, so that
`import big2small.<module>` stays light.
"""

__version__ = "0.1.0"
__all__ = ["compress", "load", "save"]


def __getattr__(name: str):
    if name in __all__:
        from big2small import api

        return getattr(api, name)
    raise AttributeError(f"module 'big2small' has no attribute {name!r}")
