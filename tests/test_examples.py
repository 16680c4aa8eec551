"""The examples run as a user runs them (offline, the embedded model)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.mark.embedded
def test_the_tool_bot_example_adopts_the_library_through_serve():
    pytest.importorskip("llama_cpp")
    pytest.importorskip("openai")
    out = subprocess.run(
        [sys.executable, str(EXAMPLES / "tool_bot.py")],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    ).stdout
    # The embedded model, through serve's prompted tool calling, called the bot's own tool ...
    assert "tool get_order(" in out
    # ... with the library's strategies in the prompt, and the bot ended with a reply.
    assert "strategies in the prompt: strategy:" in out
    assert out.strip().splitlines()[-1].startswith("bot:")
