"""Stream meta in the MongoDB backend: the stored form and MetaUpdates as update operators.

``streams.meta`` holds the engine's dict without top-level None values; their names are kept in
``streams.nulls``: on the server ``$min`` would keep a stored null, and mongomock cannot compare
None at all, while ``$max``/``$min`` on a missing field set it, which is MetaUpdate's "None
counts as absent". A MetaUpdate becomes plain lists of ``(path, value)`` (:func:`meta_ops`) so
that a commit journal can store it as data before it is applied.
"""

from __future__ import annotations

from typing import Any

import bson

from ..base import MetaUpdate


def split_meta(meta: dict[str, Any]) -> tuple[dict[str, Any], dict[str, bool]]:
    """Meta without top-level None values, and the names of those (module docstring)."""
    stored, nulls = {}, {}
    for key, value in meta.items():
        check_key(key)
        if value is None:
            nulls[key] = True
        else:
            stored[key] = value
    bson.encode({"meta": stored})  # refuses what BSON cannot hold, before anything is written
    return stored, nulls


def check_key(key: Any) -> None:
    if not isinstance(key, str) or not key or key.startswith("$") or "." in key or "\0" in key:
        raise ValueError(f"meta key {key!r} cannot be a MongoDB field name")


def meta_ops(update: MetaUpdate) -> dict[str, Any]:
    """A MetaUpdate as storable lists of (path, value); None goes to ``nulls`` (see above)."""
    ops: dict[str, list[Any]] = {"set": [], "unset": [], "max": [], "min": []}
    folded = dict(update.set)
    for key, value in update.max.items():
        if key in folded:
            folded[key] = value if folded[key] is None else max(folded[key], value)
    for key, value in update.min.items():
        if key in folded:
            folded[key] = value if folded[key] is None else min(folded[key], value)
    for key, value in folded.items():
        check_key(key)
        if value is None:
            ops["unset"].append(f"meta.{key}")
            ops["set"].append([f"nulls.{key}", True])
        else:
            ops["set"].append([f"meta.{key}", value])
            ops["unset"].append(f"nulls.{key}")
    for name in ("max", "min"):
        for key, value in getattr(update, name).items():
            if key in folded or value is None:
                continue
            check_key(key)
            if key in update.max and key in update.min:
                raise ValueError(f"meta key {key!r} has both a max and a min update")
            ops[name].append([f"meta.{key}", value])
            ops["unset"].append(f"nulls.{key}")
    bson.encode({"ops": ops})
    return ops


def apply_ops(meta: dict[str, Any], ops: dict[str, Any]) -> None:
    """What the flip of ``ops`` will do to ``meta`` (the nulls/unset bookkeeping aside)."""
    for path, value in ops.get("set", []):
        root, key = path.split(".", 1)
        if root in ("meta", "nulls"):
            meta[key] = value if root == "meta" else None
    for name, pick in (("max", max), ("min", min)):
        for path, value in ops.get(name, []):
            root, key = path.split(".", 1)
            if root == "meta":
                meta[key] = value if meta.get(key) is None else pick(meta[key], value)
