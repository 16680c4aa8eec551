"""Store methods for the audit trail (owned by the audit work): lifecycle transitions with an
optimistic version check, edits as new versions, review records, policy flags."""

from __future__ import annotations


class AuditStoreMixin:
    """Mixed into Store; uses ``self.engine`` and ``self.session()``."""
