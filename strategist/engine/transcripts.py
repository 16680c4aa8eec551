"""Importing real transcripts: each conversation redacted first (before any model sees it), then
the teacher extracts a scenario from it (as harvesting does); conversations and scenarios are
stored together, in one transaction, at the end."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..core.domain import Domain, Scenario
from ..errors import ModelError, StrategistError, one_line
from ..importers.transcripts import Transcript
from ..redact import Redactor
from ..roles import Teacher
from ..store import Store
from .harvest import HarvestConfig, Harvester, HarvestResult, _outcome, conversation_turns
from .ledger import Ledger
from .runner import NullReporter, Reporter


@dataclass
class ImportResult:
    conversations: list[int] = field(default_factory=list)
    scenarios: list[Scenario] = field(default_factory=list)
    already: int = 0  # conversations of the file stored before (same id): skipped
    failed: list[tuple[str, str]] = field(default_factory=list)  # (conversation, error), with skip_bad
    harvest: HarvestResult = field(default_factory=HarvestResult)
    redactions: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "conversations": len(self.conversations),
            "scenarios": [s.id for s in self.scenarios],
            "already_imported": self.already,
            "failed": [{"conversation": c, "error": e} for c, e in self.failed],
            "duplicates": len(self.harvest.duplicates),
            "redactions": self.redactions,
        }


async def import_transcripts(
    store: Store,
    domain: Domain,
    transcripts: Sequence[Transcript],
    teacher: Teacher,
    *,
    redactor: Redactor | None = None,
    skip_bad: bool = False,
    ledger: Ledger | None = None,
    reporter: Reporter | None = None,
    config: HarvestConfig | None = None,
) -> ImportResult:
    """Redact, extract and store. Without ``skip_bad`` a conversation the teacher cannot turn into
    a scenario stops the import and nothing is stored; with it that one is left out and counted."""
    reporter = reporter or NullReporter()
    redactor = redactor or Redactor(keep=[domain.company, domain.name])
    result = ImportResult()
    stored_keys = store.conversation_keys(domain.id, "transcript")
    harvester = Harvester(
        store, domain, teacher, config or HarvestConfig(max=10**9), ledger=ledger, reporter=reporter
    )
    rows: list[dict[str, Any]] = []
    scenarios: list[Scenario | None] = []
    seen: set[str] = set()
    totals: dict[str, int] = {}
    reporter.stage("extracting scenarios", len(transcripts))
    for t in transcripts:
        if t.key in stored_keys or t.key in seen:
            result.already += 1
            reporter.advance()
            continue
        seen.add(t.key)
        messages, counts = redactor.redact_messages(t.messages)  # before any model sees them
        for k, v in counts.items():
            totals[k] = totals.get(k, 0) + v
        label = f"conversation {t.key} (line {t.line})"
        try:
            scenario: Scenario | None = await harvester.draft(
                conversation_turns(messages),
                key=f"transcript:{t.key}",
                source={"kind": "transcript", "external_id": t.key},
                outcome=_outcome(t.meta),
            )
        except (ModelError, StrategistError) as exc:
            if not skip_bad:
                raise StrategistError(f"{label}: {one_line(exc)}; nothing was imported") from None
            result.failed.append((label, one_line(exc)))
            reporter.advance()
            continue
        assert scenario is not None
        if not harvester.keep(scenario, result.harvest, label):
            scenario = None
        else:
            harvester.note(scenario)
        rows.append(
            {
                "domain_id": domain.id,
                "source": "transcript",
                "external_id": t.key,
                "messages": messages,
                "strategies": [],
                "meta": t.meta,
                "redactions": dict(counts),
                "started_at": t.created_at,
            }
        )
        scenarios.append(scenario)
        reporter.advance()
    if ledger is not None:
        ledger.flush()
    ids, added = store.import_conversations(rows, scenarios)
    result.conversations, result.scenarios, result.redactions = ids, added, totals
    return result
