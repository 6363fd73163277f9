"""kimchid: the kimchi daemon."""

__version__ = "0.1.0"
