"""What every HTTP model adapter retries the same way: the wait a rate-limited server asks for
(``Retry-After`` / ``retry-after-ms``), else exponential backoff with jitter."""

from __future__ import annotations

import email.utils
import random
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

MAX_RETRY_AFTER = 120.0  # seconds; a server asking for longer is treated as asking for this
BACKOFF_INITIAL = 1.0
BACKOFF_MAX = 30.0


def retry_after_from_headers(headers: Mapping[str, Any] | None) -> float | None:
    """Seconds the server asked to wait (``retry-after-ms`` first, then ``retry-after`` as
    seconds or an HTTP date), at most MAX_RETRY_AFTER; None when it asked for nothing usable."""
    if not headers:
        return None
    ms = headers.get("retry-after-ms")
    if ms is not None:
        try:
            return min(max(float(ms) / 1000, 0.0), MAX_RETRY_AFTER)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return min(max(float(value), 0.0), MAX_RETRY_AFTER)
    except ValueError:
        try:  # an HTTP date
            when = email.utils.parsedate_to_datetime(value)
            return min(max((when - datetime.now(UTC)).total_seconds(), 0.0), MAX_RETRY_AFTER)
        except (TypeError, ValueError):
            return None


def backoff_seconds(attempt: int) -> float:
    """The wait before retry number ``attempt`` (1 for the first): 1 s doubling up to 30 s, plus
    up to a second of jitter (what tenacity's ``wait_exponential_jitter(1, 30)`` waits)."""
    return min(BACKOFF_INITIAL * 2 ** (attempt - 1) + random.uniform(0, 1), BACKOFF_MAX)
