"""Store methods for run-time retrieval (owned by the inference work): strategy search index,
usage counters."""

from __future__ import annotations


class SearchStoreMixin:
    """Mixed into Store; uses ``self.engine`` and ``self.session()``."""
