"""From conversations and media to model inputs: chat templates and the processor."""

from .collator import Batch, Collator
from .processor import IGNORE_INDEX, PLACEHOLDER_IDS, ModRWKVProcessor, ProcessedSample, SampleTooLong
from .template import TEMPLATES, ChatTemplate, get_template

__all__ = [
    "Batch",
    "Collator",
    "IGNORE_INDEX",
    "PLACEHOLDER_IDS",
    "TEMPLATES",
    "ChatTemplate",
    "ModRWKVProcessor",
    "ProcessedSample",
    "SampleTooLong",
    "get_template",
]
