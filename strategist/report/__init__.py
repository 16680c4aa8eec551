"""Self-contained HTML reports (plots inlined as PNG data URIs; no external assets)."""

from .html import render_eval_report

__all__ = ["render_eval_report"]
