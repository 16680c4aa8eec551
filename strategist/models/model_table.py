"""litellm's table of model prices and capabilities, read without importing litellm.

Importing litellm costs seconds; its table is a JSON file inside the package. Where litellm is
already imported its loaded table (``litellm.model_cost``) is used; else the file is read once, on
the first question, from the installed package (found without importing it). Without litellm
installed every model's price and capabilities are unknown.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import threading
from pathlib import Path
from typing import Any

TABLE_FILE = "model_prices_and_context_window_backup.json"
_lock = threading.Lock()
_table: dict[str, Any] | None = None


def _load() -> dict[str, Any]:
    global _table
    lt = sys.modules.get("litellm")
    table = getattr(lt, "model_cost", None) if lt is not None else None
    if isinstance(table, dict) and table:
        return table
    with _lock:
        if _table is None:
            _table = {}
            try:
                spec = importlib.util.find_spec("litellm")
            except (ImportError, ValueError):
                spec = None
            for folder in (spec.submodule_search_locations or []) if spec else []:
                path = Path(folder) / TABLE_FILE
                try:
                    _table = json.loads(path.read_text(encoding="utf-8"))
                    break
                except (OSError, ValueError):
                    continue
        return _table


def model_info(name: str) -> dict[str, Any] | None:
    """The table's entry for ``name`` (``openai/gpt-4o-mini`` or ``gpt-4o-mini``), or None."""
    table = _load()
    entry = table.get(name)
    if entry is None and "/" in name:
        provider, _, bare = name.partition("/")
        entry = table.get(bare)
        if isinstance(entry, dict) and entry.get("litellm_provider") not in (provider, None):
            entry = None
    return entry if isinstance(entry, dict) else None


def price_usd(name: str, prompt_tokens: int, completion_tokens: int) -> float | None:
    """What these tokens cost on ``name`` by the table; None for a model it does not price."""
    entry = model_info(name)
    if entry is None:
        return None
    p, c = entry.get("input_cost_per_token"), entry.get("output_cost_per_token")
    if not isinstance(p, int | float) or not isinstance(c, int | float):
        return None
    return float(p) * prompt_tokens + float(c) * completion_tokens


def supports_response_schema(name: str) -> bool:
    entry = model_info(name)
    return bool(entry and entry.get("supports_response_schema"))
