"""`runyard waits list` and `runyard runs answer | approve | reply`: humans in the loop at the
terminal, with the prompts of `runyard run --hitl` and the run follower they answer in.

Prompts go to stderr and read stdin, so stdout keeps only the transcript. A closed stdin
(EOF) at a prompt leaves the run waiting: answer it later with `runyard runs answer|approve`.
"""

from __future__ import annotations

import json
import sys
from itertools import islice
from typing import Annotated, Any

import typer
from rich.prompt import Prompt
from rich.table import Table
from rich.text import Text

import runyard
from runyard import Run, RunStatus, Runyard, Wait
from runyard.domain import WaitStatus

from .options import LIST_PAGE_SIZE, ApiKey, BaseUrl, connect
from .output import EXIT_INTERRUPTED, Transcript, describe_error, err, out, print_json, reporting, when

__all__ = [
    "add_runs_commands",
    "answer_pause",
    "follow_run",
    "parse_answers",
    "parse_choice",
    "summary",
    "waits_app",
]

ALLOW = {"allow", "a", "yes", "y", "ok"}
DENY = {"deny", "d", "no", "n"}
ALWAYS = {"always", "remember"}
"""Allow, and allow this tool for the rest of the run."""


# --------------------------------------------------------------------------- pure helpers


def parse_choice(raw: str, options: list[str], *, multi: bool) -> str | list[str] | None:
    """Numbers (1-based) or option texts, comma-separated for a multi-select; `None` when invalid."""
    picked: list[str] = []
    for item in (part.strip() for part in raw.split(",") if part.strip()):
        if item.isdigit() and 1 <= int(item) <= len(options):
            choice = options[int(item) - 1]
        elif item in options:
            choice = item
        else:
            return None
        if choice not in picked:
            picked.append(choice)
    if not picked or (not multi and len(picked) != 1):
        return None
    return picked if multi else picked[0]


def parse_answers(values: list[str], questions: list[dict[str, Any]]) -> dict[str, Any]:
    """`--answer "question=answer"` values as `{question: answer}`.

    A known question text wins over the first `=` (questions may contain one); with a single
    question the `question=` part may be left out; a multi-select answer is comma-separated.
    """
    known = {q["question"]: q for q in questions}
    answers: dict[str, Any] = {}
    for value in values:
        question = next((q for q in sorted(known, key=len, reverse=True) if value.startswith(q + "=")), None)
        if question is not None:
            answer = value[len(question) + 1 :]
        elif "=" in value:
            question, answer = value.split("=", 1)
        elif len(known) == 1:
            question, answer = next(iter(known)), value
        else:
            raise typer.BadParameter(f"{value!r} is not question=answer", param_hint="--answer")
        if known.get(question, {}).get("multi_select"):
            answers.setdefault(question, []).extend(a.strip() for a in answer.split(",") if a.strip())
        else:
            answers[question] = answer
    return answers


def summary(wait: Wait) -> str:
    """One line saying what a wait asks."""
    request = wait.request
    if wait.kind == "question":
        return " · ".join(str(q.get("question")) for q in request.get("questions") or [])
    if wait.kind == "approval":
        if "plan" in request:
            return f"plan: {request['plan']}"
        return f"{request.get('name')} {json.dumps(request.get('args', {}), ensure_ascii=False)}"
    return str(request.get("prompt", ""))


# --------------------------------------------------------------------------- prompts


def _ask(prompt: str, **kwargs: Any) -> str:
    answer = Prompt.ask(Text(prompt, style="bold magenta"), console=err, **kwargs)
    if not sys.stdin.isatty():  # a piped answer is not echoed: end the prompt's line ourselves
        err.file.write("\n")
    return answer


def _ask_question(question: dict[str, Any]) -> Any:
    options = [str(o) for o in question.get("options") or []]
    err.print(Text(f"? {question['question']}", style="bold"))
    if not options:
        return _ask(">")
    for number, option in enumerate(options, 1):
        err.print(Text(f"  {number}) {option}"))
    multi = bool(question.get("multi_select"))
    hint = f"numbers 1-{len(options)}, comma-separated" if multi else f"1-{len(options)}"
    while True:
        picked = parse_choice(_ask(f"choose ({hint})"), options, multi=multi)
        if picked is not None:
            return picked
        err.print(Text(f"pick {'one or more of' if multi else 'one of'} 1-{len(options)}", style="red"))


def _ask_approval(wait: Wait) -> dict[str, Any]:
    if "plan" in wait.request:
        err.print(Text("? approve this plan:", style="bold"))
        err.print(Text(str(wait.request["plan"])))
    else:
        err.print(Text(f"? allow {summary(wait)}", style="bold"))
    while True:
        word = _ask("allow, deny or always").strip().lower()
        if word in ALLOW or word in ALWAYS:
            return {"decision": "allow", "remember": word in ALWAYS}
        if word in DENY:
            reason = _ask("reason (optional)", default="", show_default=False).strip()
            return {"decision": "deny", "reason": reason or None}
        err.print(Text("type allow, deny or always", style="red"))


def answer_pause(client: Runyard, run_id: str, waits: list[Wait]) -> None:
    """Ask each open wait of a pause at the terminal, oldest first, and send the answers.

    Raises `EOFError` when stdin closes before an answer.
    """
    for wait in sorted((w for w in waits if w.status is WaitStatus.OPEN), key=lambda w: w.id):
        if wait.kind == "question":
            answers = {q["question"]: _ask_question(q) for q in wait.request.get("questions") or []}
            client.runs.answer(run_id, answers, wait_id=wait.id)
        elif wait.kind == "approval":
            answer = _ask_approval(wait)
            client.runs.approve(run_id, wait_id=wait.id, **answer)
        elif wait.kind == "input":
            client.runs.input(run_id, _ask(f"? {wait.request.get('prompt') or 'input'}"))
        # A `tool_result` wait is the caller's program's to answer (`client.runs.tool_results`), not a human's.


def cancel_after_interrupt(client: Runyard, run_id: str) -> None:
    """Cancel the run a Ctrl-C interrupted; a run that finished meanwhile is left alone."""
    err.print(Text(f"interrupted: cancelling {run_id}", style="yellow"))
    try:
        client.runs.cancel(run_id)
    except runyard.ConflictError:
        pass  # it finished in the meantime
    except runyard.RunyardError as exc:
        err.print(Text(f"error: could not cancel {run_id}: {describe_error(exc, client)}", style="red"))


def follow_run(client: Runyard, run_id: str, *, hitl: bool, after_seq: int = 0, as_json: bool = False) -> Run:
    """Print a run's events until it ends, or pauses; with `hitl`, ask each pause here and go on.

    Returns the run as it is at the end (waiting when a pause was left unanswered). Ctrl-C
    cancels the run and exits 130.
    """
    view = None if as_json else Transcript()
    try:
        with client.runs.stream_events(run_id, after_seq=after_seq) as stream:
            if view is not None:
                view.wait("queued…")
            for event in stream:
                if view is None:
                    out.file.write(event.model_dump_json() + "\n")
                    out.file.flush()
                else:
                    view.show(event)
                if hitl and isinstance(event, runyard.RunWaiting):
                    if view is not None:
                        view.pause()
                    try:
                        # The stream folded this event in already: its open waits are this pause's.
                        answer_pause(client, run_id, stream.waiting)
                    except EOFError:
                        err.print(Text("stdin closed: no answer given", style="yellow"))
                        break
    except KeyboardInterrupt:
        if view is not None:
            view.interrupted()
        cancel_after_interrupt(client, run_id)
        raise typer.Exit(EXIT_INTERRUPTED) from None
    finally:
        if view is not None:
            view.pause()
    final = client.runs.get(run_id)
    if view is not None:
        view.finish(final)
    return final


# --------------------------------------------------------------------------- commands

waits_app = typer.Typer(help="What needs a human, across runs.", no_args_is_help=True)


@waits_app.command("list")
def waits_list(
    status: Annotated[str | None, typer.Option("--status", "-s", help="open, resolved, expired or cancelled.")] = None,
    user_id: Annotated[str | None, typer.Option("--user-id", help="Only waits of this end user.")] = None,
    run_id: Annotated[str | None, typer.Option("--run-id", help="Only waits of this run.")] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="Show at most this many waits.")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    base_url: BaseUrl = None,
    api_key: ApiKey = None,
) -> None:
    """List waits (pauses of runs for a human), newest first: `--status open` is what needs a human now."""
    statuses = [s.value for s in WaitStatus]
    if status is not None and status not in statuses:
        raise typer.BadParameter(f"one of {', '.join(statuses)}", param_hint="--status")
    client = connect(base_url, api_key)
    filters: dict[str, Any] = {"limit": min(limit, LIST_PAGE_SIZE)}
    filters.update({k: v for k, v in (("status", status), ("user_id", user_id), ("run_id", run_id)) if v})
    with reporting(client):
        found = list(islice(client.waits.list(**filters), limit))
    if as_json:
        print_json([w.model_dump(mode="json") for w in found])
        return
    if not found:
        err.print(Text("no waits found", style="dim"))
        return
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("id", "kind", "status", "run", "user", "asks", "created"):
        table.add_column(column, no_wrap=column != "asks")
    for w in found:
        table.add_row(w.id, w.kind, w.status.value, w.run_id, w.user_id or "", summary(w), when(w.created_at))
    out.print(table)


def runs_answer(
    run_id: Annotated[str, typer.Argument(help="The run's id.")],
    answer: Annotated[list[str] | None, typer.Option("--answer", help='"question=answer" (repeatable).')] = None,
    answers_json: Annotated[
        str | None, typer.Option("--json", help='All answers as JSON: \'{"question": "answer"}\'.')
    ] = None,
    wait_id: Annotated[str | None, typer.Option("--wait-id", help="Default: the oldest open question.")] = None,
    base_url: BaseUrl = None,
    api_key: ApiKey = None,
) -> None:
    """Answer a run's clarifying question(s)."""
    if bool(answer) == (answers_json is not None):
        raise typer.BadParameter(
            "give --answer question=answer (repeatable) or --json, not both", param_hint="--answer"
        )
    client = connect(base_url, api_key)
    with reporting(client, f"run {run_id}"):
        if answers_json is not None:
            try:
                answers = json.loads(answers_json)
            except ValueError as exc:
                raise typer.BadParameter(f"not JSON: {exc}", param_hint="--json") from None
            if not isinstance(answers, dict):
                raise typer.BadParameter('a JSON object {"question": "answer"}', param_hint="--json")
        else:
            questions = [
                q
                for w in client.runs.waits(run_id)
                if w.kind == "question" and w.status is WaitStatus.OPEN and (wait_id is None or w.id == wait_id)
                for q in w.request.get("questions") or []
            ]
            answers = parse_answers(answer or [], questions)
        wait = client.runs.answer(run_id, answers, wait_id=wait_id)
    out.print(Text(f"answered {wait.id} of {run_id}"))


def runs_approve(
    run_id: Annotated[str, typer.Argument(help="The run's id.")],
    allow: Annotated[bool, typer.Option("--allow", help="Let the tool call (or plan) go ahead.")] = False,
    deny: Annotated[bool, typer.Option("--deny", help="Refuse it; the model is told why (--reason).")] = False,
    reason: Annotated[str | None, typer.Option("--reason", help="Told to the model when denied.")] = None,
    remember: Annotated[bool, typer.Option("--remember", help="Allow this tool for the rest of the run.")] = False,
    wait_id: Annotated[str | None, typer.Option("--wait-id", help="Default: the oldest open approval.")] = None,
    base_url: BaseUrl = None,
    api_key: ApiKey = None,
) -> None:
    """Allow or deny the tool call (or plan) a run waits on."""
    if allow == deny:
        raise typer.BadParameter("give exactly one of --allow and --deny", param_hint="--allow/--deny")
    client = connect(base_url, api_key)
    with reporting(client, f"run {run_id}"):
        wait = client.runs.approve(run_id, decision=allow, wait_id=wait_id, reason=reason, remember=remember)
    out.print(Text(f"{'allowed' if allow else 'denied'} {wait.id} of {run_id}"))


def runs_reply(
    run_id: Annotated[str, typer.Argument(help="The run's id.")],
    message: Annotated[str, typer.Argument(help="The follow-up message.")],
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Stream the run until it ends.")] = False,
    base_url: BaseUrl = None,
    api_key: ApiKey = None,
) -> None:
    """Follow up on an ended run (a new run on its thread), or answer a waiting one with free text.

    With --follow, exits as `runyard run` does: 0 when the run completed, 1 otherwise.
    """
    client = connect(base_url, api_key)
    with reporting(client, f"run {run_id}"):
        run = client.runs.reply(run_id, message)
    same = run.id == run_id
    err.print(Text(f"answered {run_id}" if same else f"started {run.id} on {run.thread_id}", style="dim"))
    if not follow:
        if not same:
            out.print(run.id)
        return
    with reporting(client, f"run {run.id}"):
        final = follow_run(client, run.id, hitl=run.human_in_the_loop, after_seq=run.last_seq if same else 0)
    raise typer.Exit(0 if final.status is RunStatus.COMPLETED else 1)


def add_runs_commands(runs_app: typer.Typer) -> None:
    """Add `answer`, `approve` and `reply` to the `runs` group: they live here, with the other pause commands."""
    runs_app.command("answer")(runs_answer)
    runs_app.command("approve")(runs_approve)
    runs_app.command("reply")(runs_reply)
