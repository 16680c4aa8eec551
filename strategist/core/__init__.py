"""Pure data and logic: no model provider, no database."""
