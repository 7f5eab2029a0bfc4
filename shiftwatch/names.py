"""Model names: the user's, checked wherever they enter.

A model name becomes a bundle folder, a BentoML store tag and a Prometheus label
value, so it follows BentoML's tag rules and is never a path.
"""

from __future__ import annotations

import re

_NAME = re.compile(r"^[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?$")
NAME_RULE = (
    "lowercase letters, digits, '.', '_' and '-', starting and ending with a letter or digit, "
    "at most 63 characters"
)


def validate_model_name(name: str) -> str:
    """`name` if it is a valid model name, else a ValueError that states the rule."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"model name {name!r} is not valid: use {NAME_RULE}")
    return name


def split_model_ref(ref: str) -> tuple[str, str]:
    """`name` or `name:version` (a BentoML store tag) -> (name, version or "latest").

    Raises:
        ValueError: a name or version that breaks BentoML's tag rules.
    """
    name, _, version = ref.partition(":")
    validate_model_name(name)
    if version and not _NAME.match(version):
        raise ValueError(f"model version in {ref!r} is not a valid store version")
    return name, version or "latest"
