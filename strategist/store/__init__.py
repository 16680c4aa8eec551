"""Storage: SQLModel tables over SQLite (or any SQLAlchemy URL), behind one Store class."""

from .engine import database_url, make_engine
from .store import Store

__all__ = ["Store", "database_url", "make_engine"]
