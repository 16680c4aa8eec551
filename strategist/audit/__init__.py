"""Auditing strategies: the review lifecycle, the policy check, and the git-friendly library file.

Pure logic only; the store applies it (strategist/store/audit.py), the CLI and the web page
present it."""
