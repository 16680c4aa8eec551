"""The local audit web page (``strategist audit-ui``): FastAPI with Jinja2 templates."""
