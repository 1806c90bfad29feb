"""From conversations and media to model inputs: chat templates and the processor."""

from .processor import IGNORE_INDEX, PLACEHOLDER_IDS, ModRWKVProcessor, ProcessedSample, SampleTooLong
from .template import TEMPLATES, ChatTemplate, get_template

__all__ = [
    "IGNORE_INDEX",
    "PLACEHOLDER_IDS",
    "TEMPLATES",
    "ChatTemplate",
    "ModRWKVProcessor",
    "ProcessedSample",
    "SampleTooLong",
    "get_template",
]
