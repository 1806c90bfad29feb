"""Errors shared by every checkpoint reader and writer."""


class CheckpointError(ValueError):
    """A checkpoint that cannot be read, converted or loaded; the message names every offending key."""
