"""Cells of the book's Markdown tables: a value with its interval, a range over seeds."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["interval_cell", "range_cell"]


def interval_cell(row: Mapping[str, Any], name: str, fmt: str, scale: float = 1.0) -> str:
    """``row[name]`` formatted with ``fmt`` (times ``scale``), with its interval
    ``[row[name_lo], row[name_hi]]`` on a second line when the row has both ends."""
    text = format(row[name] * scale, fmt)
    low, high = row.get(f"{name}_lo"), row.get(f"{name}_hi")
    if low is not None and high is not None:
        text += f"<br>[{format(low * scale, fmt)}, {format(high * scale, fmt)}]"
    return text


def range_cell(row: Mapping[str, Any], name: str) -> str:
    """The range ``name_min``–``name_max`` of an integer column over seeds, or the one value
    when they agree."""
    low, high = int(row[f"{name}_min"]), int(row[f"{name}_max"])
    return f"{low}" if low == high else f"{low}–{high}"
