"""A small hand-built strategy library for the run-time tests: a few Northwind strategies whose
words do not overlap much, so which one a conversation should retrieve is clear."""

from __future__ import annotations

from strategist.core.dialogue import StrategyText
from strategist.core.domain import Domain

# key -> (trigger, guidance, status)
STRATEGIES: dict[str, tuple[str, str, str]] = {
    "late_refund": (
        "A customer asks for a card refund more than 30 days after delivery",
        "Explain the 31-60 day rule: returns get store credit, not money back to the card.",
        "approved",
    ),
    "size_exchange": (
        "A customer wants boots or a jacket in another size",
        "Offer the one free size exchange within 60 days, subject to stock.",
        "approved",
    ),
    "backorder": (
        "A customer asks when a back-ordered tent will ship",
        "Never promise a date: quote the estimated window and say it can change.",
        "approved",
    ),
    "damaged": (
        "A customer reports an item that arrived damaged or broken",
        "Ask for a photo within 7 days, then offer a replacement or a refund.",
        "approved",
    ),
    "identity": (
        "A customer wants order details but gives only a name or phone number",
        "Ask for both the order number and the email address before looking anything up.",
        "approved",
    ),
    "discount": (
        "A customer asks for a discount code or coupon",
        "Only SORRY10 exists, for late shipments; no other codes or coupons.",
        "pending",
    ),
    "supervisor": (
        "A customer demands a supervisor or manager",
        "Offer escalation by email; supervisors reply within one business day.",
        "rejected",
    ),
    "warranty": (
        "A customer asks about warranty repairs for a broken zipper",
        "Warranty repairs are handled by the brand; give its contact page.",
        "retired",
    ),
}

CONVERSATIONS: dict[str, list[dict[str, str]]] = {
    "late_refund": [{"role": "user", "content": "My boots came 40 days ago. I want a refund to my card."}],
    "backorder": [{"role": "user", "content": "When will my back-ordered tent ship? Give me a date!"}],
    "damaged": [{"role": "user", "content": "The stove arrived broken, the box was damaged too."}],
    "identity": [{"role": "user", "content": "I'm Dana Smith, phone 555 0100, what's in my order?"}],
}


def add_strategies(store, domain: Domain, keys=None) -> dict[str, int]:
    """Store the strategies (with their statuses) in ``domain``; returns key -> id."""
    store.upsert_domain(domain)
    ids = {}
    for key in keys or STRATEGIES:
        trigger, guidance, status = STRATEGIES[key]
        row = store.add_strategy(
            domain.id,
            StrategyText(trigger=trigger, guidance=guidance, example=""),
            provenance={"test": key},
            evidence={},
            author="test",
            status=status,
        )
        ids[key] = row.id
    return ids


def set_status(store, strategy_id: int, status: str) -> None:
    """Change a status the way any other code might: a plain UPDATE."""
    import sqlalchemy as sa

    with store.engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE strategies SET status = :s WHERE id = :i"), {"s": status, "i": strategy_id}
        )
