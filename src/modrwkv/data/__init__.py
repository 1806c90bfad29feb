"""Data: the canonical `Sample`, readers for common formats, and the batch collator."""

from .collator import Batch, Collator
from .sample import MARKERS, MODALITIES, Message, Sample

__all__ = ["MARKERS", "MODALITIES", "Batch", "Collator", "Message", "Sample"]
