"""The vocabulary of runs: their status, the events they record, and what became of a candidate."""

from __future__ import annotations

from typing import Literal

RunStatus = Literal["running", "completed", "stopped", "failed"]
# Besides grow and eval: harvesting scenarios, importing transcripts, judging captured traffic.
RunCommand = Literal["grow", "eval", "harvest", "import-transcripts", "traffic-judge"]
# "judge_failure": a dialogue that could not be judged (a resumed run does not judge it again).
EventKind = Literal["failure", "judge_failure", "budget", "info"]
FAILURE_KINDS: tuple[EventKind, ...] = ("failure", "judge_failure")
CandidateOutcome = Literal["proposed", "accepted", "rejected", "merged", "error"]
