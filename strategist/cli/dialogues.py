"""``strategist dialogues show``: one stored dialogue, turn by turn, with the agent's tool calls and
their results, and its judgement."""

from __future__ import annotations

from .common import DbOption, JsonOption, new_app, open_store, print_json
from .views import say, table

app = new_app("Dialogues: what was said and done in one simulated conversation.")


@app.command("show")
def dialogues_show(dialogue_id: int, db: DbOption = None, json_out: JsonOption = False) -> None:
    """Show a dialogue (its turns, tool calls and results) and how it was judged."""
    from ..audit.evidence import shown_turns

    store = open_store(db)
    d = store.get_dialogue(dialogue_id)
    j = store.judgement_for(dialogue_id)
    if json_out:
        print_json({**d.model_dump(mode="json"), "judgement": j.model_dump(mode="json") if j else None})
        return
    say(
        f"dialogue {d.id}: scenario {d.scenario_id}, {d.condition}, sample {d.sample}, seed {d.seed}, "
        f"ended by {d.ended_by}; student {d.student_model}, customer {d.customer_model}",
        style="bold",
    )
    if d.error:
        say(f"error: {d.error}", style="red")
    for who, words in shown_turns(d.turns):
        say(f"{who}: {words}")
    if j is None:
        say("not judged")
        return
    say(f"score {j.score:.3f} (judge {j.judge_model}); critique: {j.critique or '-'}")
    rows: list[tuple[str, str, str]] = [(c.kind, c.check, "pass" if c.passed else "FAIL") for c in j.checks]
    rows += [("rubric", r.item, "pass" if r.passed else "FAIL") for r in j.rubric]
    if rows:
        table("checks", ["kind", "check", "result"], rows)
