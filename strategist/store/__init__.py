"""Storage: SQLModel tables over SQLite (or any SQLAlchemy URL), behind one Store class."""

from .store import Store, database_url

__all__ = ["Store", "database_url"]
