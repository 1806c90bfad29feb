"""Errors shared by every checkpoint reader and writer, and the one key check they all use."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any


class CheckpointError(ValueError):
    """A checkpoint that cannot be read, converted or loaded; the message names every offending key."""


def check_keys(
    state_dict: Mapping[str, Any],
    expected: Mapping[str, tuple[int, ...]],
    what: str,
    ignore: Iterable[str] = (),
) -> None:
    """Raises one CheckpointError, prefixed by `what`, naming every missing, unexpected (not in
    `expected` nor `ignore`), mis-shaped and non-tensor entry of `state_dict`."""
    ignored = set(ignore)
    missing = sorted(k for k in expected if k not in state_dict)
    unexpected = sorted(k for k in state_dict if k not in expected and k not in ignored)
    not_tensors = sorted(k for k, v in state_dict.items() if not hasattr(v, "shape"))
    mis_shaped = [
        f"{k}: checkpoint {list(state_dict[k].shape)} vs expected {list(shape)}"
        for k, shape in sorted(expected.items())
        if hasattr(state_dict.get(k), "shape") and tuple(int(d) for d in state_dict[k].shape) != tuple(shape)
    ]
    problems = []
    if missing:
        problems.append(f"missing keys {missing}")
    if unexpected:
        problems.append(f"unexpected keys {unexpected}")
    if mis_shaped:
        problems.append(f"mis-shaped keys {mis_shaped}")
    if not_tensors:
        problems.append(f"values that are not tensors {not_tensors}")
    if problems:
        raise CheckpointError(f"{what}: " + "; ".join(problems))
