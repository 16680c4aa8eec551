"""Run the strategist CLI in a subprocess on the scripted world of tests/world.py.

Usage: python tests/scripted_cli.py ARGS...  ($SCRIPTED_DELAY seconds of latency per model call).
Role flags are added: --teacher scripted/teacher etc.
"""

from __future__ import annotations

import asyncio
import os
import sys

import world

from strategist.cli import main
from strategist.models import FunctionModel, register_model

DELAY = float(os.environ.get("SCRIPTED_DELAY", "0"))


def slow(fn):
    async def call(messages, sampling):
        await asyncio.sleep(DELAY)
        return fn(messages, sampling)

    return call


if __name__ == "__main__":
    for role, fn in world.role_functions().items():
        register_model(f"scripted/{role}", FunctionModel(slow(fn), name=f"scripted/{role}"))
    sys.argv = ["strategist", *sys.argv[1:]]
    main()
