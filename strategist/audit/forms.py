"""The YAML form a reviewer edits in $EDITOR (``strategist strategies edit ID``)."""

from __future__ import annotations

from pydantic import Field, field_validator

from .exchange import NonBlank, _not_blank, _Strict, dump_yaml, load_model
from .lifecycle import Text


class EditForm(_Strict):
    trigger: NonBlank
    guidance: NonBlank
    example: str = ""
    note: str = Field(default="", description="why the words changed (goes into the trail)")

    _blank = field_validator("trigger", "guidance")(_not_blank)

    @property
    def text(self) -> Text:
        return Text(self.trigger.strip(), self.guidance.strip(), self.example.strip())


def edit_form(strategy_id: int, version: int, status: str, text: Text) -> str:
    header = (
        f"# Strategy {strategy_id}, version {version} ({status}). Change the words, save and close;\n"
        "# saving makes a new version. Leave the words as they are to cancel.\n"
        "# note: why you changed it (it goes into the review trail).\n"
    )
    return header + dump_yaml({**text.as_dict(), "note": ""})


def parse_edit_form(text: str, source: str = "edit form") -> EditForm | None:
    """The edited form, or None when it was emptied (a cancel)."""
    if not "".join(line for line in text.splitlines() if not line.lstrip().startswith("#")).strip():
        return None
    form, _ = load_model(text, source, EditForm)
    return form
