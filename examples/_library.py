"""A small library for the examples: the Northwind domain and three approved strategies, in a
temporary SQLite file. Your own library is what ``strategist grow`` and a review leave behind."""

from __future__ import annotations

from pathlib import Path

from strategist.core.dialogue import StrategyText
from strategist.packs import load_domain
from strategist.store import Store

PACK = Path(__file__).resolve().parent.parent / "scenarios" / "northwind"

STRATEGIES = [
    StrategyText(
        trigger="A customer asks for a card refund more than 30 days after delivery",
        guidance="From day 31 to day 60 returns get store credit only, never money back to the card.",
        example="Since it's been 40 days, I can offer you store credit for the full amount.",
    ),
    StrategyText(
        trigger="A customer asks when a back-ordered item will arrive",
        guidance="Give only the estimated window on the order and say it can change; never promise a date.",
    ),
    StrategyText(
        trigger="A customer reports an item that arrived damaged",
        guidance="Ask for a photo within 7 days of delivery, then offer a free replacement or a refund.",
    ),
]


def make_library(path: Path) -> None:
    store = Store.open(path)
    store.upsert_domain(load_domain(PACK / "domain.yaml"))
    for text in STRATEGIES:
        # "approved": as if a reviewer had approved them (``strategist strategies approve ID``).
        store.add_strategy("northwind", text, provenance={}, evidence={}, author="example", status="approved")
    store.close()
