"""The vocabulary is declared once (`runyard.domain`, `runyard._events`) and everything else reads it."""

from __future__ import annotations

from typing import get_type_hints

from runyard import _events, domain
from runyard.client.resources.run_params import RunCreateParams, RunOptionsParams
from runyard.server.schemas import RunCreate
from runyard.store import schema


def test_run_options_and_their_keyword_form_agree() -> None:
    assert set(get_type_hints(RunOptionsParams)) == set(domain.RunOptions.model_fields)
    assert set(domain.RunOptions.model_fields) <= set(get_type_hints(RunCreateParams))
    # The server's request model and the run resource take the options from the one declaration.
    for model in (RunCreate, domain.Run):
        for name, field in domain.RunOptions.model_fields.items():
            assert model.model_fields[name].default == field.default, (model, name)


def test_every_event_type_has_a_typed_model_and_unknown_types_still_parse() -> None:
    assert set(_events.EVENT_MODELS) == set(_events.EVENT_TYPES)
    envelope = {"seq": 3, "run_id": "run_x", "data": {"waiting_for": "input"}, "created_at": "2026-01-01T00:00:00Z"}
    waiting = _events.parse_event({**envelope, "type": "run.waiting"})
    assert isinstance(waiting, _events.RunWaiting) and waiting.waiting_for == "input"
    newer = _events.parse_event({**envelope, "type": "run.something_new"})
    assert type(newer) is _events.Event and newer.type == "run.something_new"
    assert _events.parse_event({**envelope, "type": "run.completed"}).is_terminal


def test_schema_constraints_are_built_from_the_enums() -> None:
    checks = {str(c.sqltext) for c in schema.waits.constraints if hasattr(c, "sqltext")}
    assert any(all(f"'{s.value}'" in check for s in domain.WaitStatus) for check in checks)
    runs_checks = {str(c.sqltext) for c in schema.runs.constraints if hasattr(c, "sqltext")}
    assert any(all(f"'{s.value}'" in check for s in domain.RunStatus) for check in runs_checks)
    assert set(schema.ACTIVE) == {s.value for s in domain.ACTIVE_STATUSES}
    assert set(schema.TERMINAL) == {s.value for s in domain.TERMINAL_STATUSES}
