"""A stable train/validation/test split computed from each image's own identity.

Every image gets ``u = hash(salt, key) ∈ [0, 1)`` (the first 8 bytes of SHA-256 of its key —
by default its path relative to the collection root, or its content hash) and falls in
``train`` when ``u < 0.7``, ``val`` when ``u < 0.8`` and ``test`` otherwise (default 7:1:2).
Nothing is shuffled and nothing depends on the other images, so adding images never moves an
existing one to another split, and the split is the same on every machine and engine.

Stratification: hashes are independent of labels, so every class is split 7:1:2 in
expectation, with a per-class deviation of about ``sqrt(p(1-p)/n)`` (±0.015 on the train share
of a class of 1,000 images). An exact per-class quota would need ranking images within their
class, which moves images when others are added — the stability promise wins.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from pixelmill.errors import InvalidParameterError

__all__ = ["SPLITS", "assign_split", "describe_split", "parse_ratios", "same_split",
           "split_fraction", "split_of", "split_settings"]

SPLITS = ("train", "val", "test")
DEFAULT_RATIOS = (7.0, 1.0, 2.0)


def parse_ratios(ratios: str | Sequence[float] | None) -> tuple[float, float, float]:
    """``"7:1:2"`` or ``(0.7, 0.1, 0.2)`` -> three fractions summing to 1."""
    if ratios is None:
        ratios = DEFAULT_RATIOS
    given = ratios
    if isinstance(ratios, str):
        try:
            ratios = [float(r) for r in ratios.split(":")]
        except ValueError:
            ratios = []
    values = [float(r) for r in ratios]
    if len(values) != 3 or any(v < 0 or not np.isfinite(v) for v in values) or sum(values) <= 0:
        raise InvalidParameterError(  # what the user typed, not what parsing made of it
            f"split ratios: expected three non-negative numbers like 7:1:2, got {given!r}",
            field="ratios",
        )
    total = sum(values)
    if not np.isfinite(total):  # 1e308:1e308:1 sums to inf (every fraction 0): scale first
        values = [v / max(values) for v in values]
        total = sum(values)
    return (values[0] / total, values[1] / total, values[2] / total)


def split_fraction(key: str, salt: str = "") -> float:
    """The key's position in [0, 1): SHA-256 of ``salt + "\\0" + key``, first 8 bytes.

    Backslashes count as ``/``: a Windows listing (``cats\\001.jpg``) splits as on POSIX."""
    key = key.replace("\\", "/")
    digest = hashlib.sha256(f"{salt}\0{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def split_of(key: str, ratios: str | Sequence[float] | None = None, salt: str = "") -> str:
    """``train``, ``val`` or ``test`` for one key.

    Examples
    --------
    >>> split_of("cats/001.jpg") in SPLITS
    True
    """
    train, val, _ = parse_ratios(ratios)
    u = split_fraction(key, salt)
    if u < train:
        return "train"
    if u < train + val:
        return "val"
    return "test"


def assign_split(
    keys: Iterable[str], ratios: str | Sequence[float] | None = None, salt: str = ""
) -> list[str]:
    """The split of every key (see :func:`split_of`)."""
    fractions = parse_ratios(ratios)
    return [split_of(k, fractions, salt) for k in keys]


def split_settings(ratios: str | Sequence[float] | None = None, split_by: str = "relpath",
                   salt: str = "", **origin: Any) -> dict[str, Any]:
    """The settings that decide every image's split, as recorded in a feature table's metadata
    and a model's ``model.json`` (``origin``: where they came from, e.g. ``source="table"``)."""
    return {"ratios": list(parse_ratios(ratios)), "split_by": str(split_by), "salt": str(salt),
            **origin}


def same_split(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Whether two recorded split settings put every image in the same split."""
    try:
        ra, rb = parse_ratios(a.get("ratios")), parse_ratios(b.get("ratios"))
    except InvalidParameterError:
        return False
    return (all(abs(x - y) < 1e-9 for x, y in zip(ra, rb, strict=True))
            and str(a.get("split_by", "relpath")) == str(b.get("split_by", "relpath"))
            and str(a.get("salt", "")) == str(b.get("salt", "")))


def describe_split(settings: Mapping[str, Any], origin: bool = True) -> str:
    """``ratios 0.7:0.1:0.2, split-by relpath, salt ''`` (and, with ``origin``, where they
    came from)."""
    try:
        ratios = ":".join(f"{r:g}" for r in parse_ratios(settings.get("ratios")))
    except InvalidParameterError:
        ratios = repr(settings.get("ratios"))
    text = (f"ratios {ratios}, split-by {settings.get('split_by', 'relpath')}, "
            f"salt {str(settings.get('salt', ''))!r}")
    source, uri = settings.get("source"), settings.get("uri")
    if not origin:
        return text
    if source == "images":
        text += f"; from --images {uri}" if uri else "; from --images"
    elif source == "table" and uri:
        text += f"; from {uri}"
    elif source == "default":
        text += "; the default split of a table without a split column"
    return text
