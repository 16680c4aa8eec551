"""Importers: build domains and scenarios from other benchmarks' files (no database access)."""
