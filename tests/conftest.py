from __future__ import annotations

import os
from pathlib import Path

import pytest

# litellm must never fetch its price table from the network during tests.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

ROOT = Path(__file__).resolve().parent.parent
NORTHWIND = ROOT / "scenarios" / "northwind"


@pytest.fixture
def northwind():
    from strategist.packs import load_domain

    return load_domain(NORTHWIND / "domain.yaml")


@pytest.fixture
def store(tmp_path):
    from strategist.store import Store

    s = Store.open(tmp_path / "test.db")
    yield s
    s.close()
