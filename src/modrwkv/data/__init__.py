"""Data: the canonical `Sample` and readers for common formats (see `readers`)."""

from .sample import MARKERS, MODALITIES, Message, Sample, escape_markers, unescape_markers

__all__ = ["MARKERS", "MODALITIES", "Message", "Sample", "escape_markers", "unescape_markers"]
