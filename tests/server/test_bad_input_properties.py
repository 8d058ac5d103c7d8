"""Property-based bad input (DESIGN invariant 8), on SQLite and on PostgreSQL.

Hypothesis builds request bodies for POST /v1/agents, POST /v1/runs and POST /v1/threads: a mix
of plausible fields and arbitrary JSON (deep nesting, integers past 64 bits, unicode with NUL
and lone surrogates, NaN/Infinity/1e400 written as raw JSON text, invalid UTF-8 bytes, wrong
types, unknown keys). The body is serialised by hand so that what `json.dumps` refuses can be
sent. For every body:

- the status is below 500;
- a 4xx carries `{"error": {"code": str, "message": str, "field": ...}}` and writes nothing
  (row counts of agents, runs, threads, idempotency keys and orgs unchanged);
- a 201 is readable back (GET of the new resource, and the list endpoint, answer 200), and
  the fields sent read back exactly as sent (nothing silently rewritten, e.g. NaN into null).
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from support.servers import QuietClient, ServerInThread, server_on

from runyard.store import schema

PROPERTY_SETTINGS = settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)


# Servers on both databases


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerInThread]:
    """A running server on a fresh database of each dialect."""
    with server_on(request.param, tmp_path_factory.mktemp("properties")) as srv:
        yield srv


@pytest.fixture(scope="module")
def http(server: ServerInThread) -> Iterator[httpx.Client]:
    with QuietClient(base_url=server.base_url, headers=server.headers(), timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def agent_id(http: httpx.Client) -> str:
    r = http.post("/v1/agents", json={"name": f"prop-{uuid.uuid4().hex[:10]}"})
    assert r.status_code == 201, r.text
    return r.json()["id"]


def row_counts(server: ServerInThread) -> dict[str, int]:
    tables = (schema.agents, schema.runs, schema.threads, schema.idempotency_keys, schema.orgs)

    async def count() -> dict[str, int]:
        async with server.app.state.store.read() as conn:
            return {t.name: (await conn.execute(select(func.count()).select_from(t))).scalar_one() for t in tables}

    return server.call(count())


# Raw JSON: what json.dumps would refuse or rewrite


class Raw(bytes):
    """JSON text inserted as is: NaN, Infinity, 1e400, a string holding invalid UTF-8 bytes."""


class AgentRef:
    """Stands for the id of a real agent (known only once the server runs)."""


AGENT = AgentRef()


def dump(value: Any, agent_id: str) -> bytes:
    """Serialise like JSON, but keep `Raw` tokens, non-finite floats and huge ints as written.
    Iterative, so a value nested hundreds of levels deep is no problem."""
    out: list[bytes] = []
    stack: list[Any] = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, Raw):
            out.append(bytes(item))
        elif isinstance(item, AgentRef):
            out.append(json.dumps(agent_id).encode())
        elif isinstance(item, float) and not math.isfinite(item):
            out.append(b"NaN" if math.isnan(item) else b"Infinity" if item > 0 else b"-Infinity")
        elif isinstance(item, dict):
            parts: list[Any] = [Raw(b"}")]
            for i, (key, child) in enumerate(reversed(list(item.items()))):
                parts.append(child)
                parts.append(Raw(json.dumps(key).encode() + b":"))
                if i < len(item) - 1:
                    parts.append(Raw(b","))
            parts.append(Raw(b"{"))
            stack.extend(parts)
        elif isinstance(item, list):
            parts = [Raw(b"]")]
            for i, child in enumerate(reversed(item)):
                parts.append(child)
                if i < len(item) - 1:
                    parts.append(Raw(b","))
            parts.append(Raw(b"["))
            stack.extend(parts)
        else:  # json.dumps escapes NUL and lone surrogates as \u0000 and \ud800 (ensure_ascii)
            out.append(json.dumps(item).encode())
    return b"".join(out)


def test_dump_matches_json_for_plain_values():
    value = {"a": [1, 2.5, None, True, {"b": "\u0000\ud800é"}], "c": {}, "d": [], "e": 2**70}
    assert json.loads(dump(value, "x")) == json.loads(json.dumps(value))
    assert dump({"x": [Raw(b"NaN"), float("-inf"), AGENT]}, "agt_1") == b'{"x":[NaN,-Infinity,"agt_1"]}'


# Strategies


RAW_TOKENS = [Raw(b"NaN"), Raw(b"Infinity"), Raw(b"-Infinity"), Raw(b"1e400"), Raw(b"-1e400"), Raw(b"1E999"),
              Raw(b'"\xed\xa0\x80"'), Raw(b'"\xff\xfe"'), Raw(b'"\xc0\xaf"'), Raw(b"123456789012345678901234567890")]
ODD_TEXT = ["\u0000", "a\u0000b", "\ud800", "x\udfffy", "\ud83d", "", " ", "é" * 5, "\u202e", "\ufeff", "🙂" * 3,
            "run_" + "0" * 26, "null", "NaN"]
BIG_INTS = [2**31, 2**53 + 1, 2**63 - 1, 2**63, 2**64, -(2**63) - 1, 2**70, -(2**70), 10**30]

texts = st.one_of(st.text(max_size=12), st.sampled_from(ODD_TEXT),
                  st.text(st.characters(codec="utf-8", exclude_categories=()), max_size=6))
keys = st.one_of(st.text(max_size=8), st.sampled_from(["\u0000", "k\u0000", "\ud800", "", "script", "$ref"]))
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.sampled_from(BIG_INTS),
    st.floats(allow_nan=False, allow_infinity=False), st.sampled_from(RAW_TOKENS), texts,
)
values = st.recursive(scalars, lambda children: st.lists(children, max_size=4)
                      | st.dictionaries(keys, children, max_size=4), max_leaves=10)


def _nest(args: tuple[int, str, Any]) -> Any:
    levels, kind, leaf = args
    value = leaf
    for _ in range(levels):
        value = {"a": value} if kind == "dict" else [value]
    return value


deep = st.tuples(st.integers(1, 400), st.sampled_from(["dict", "list"]), scalars).map(_nest)
anything = st.one_of(values, values, deep)

clean_text = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=16)
clean_words = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), min_size=1, max_size=16)
good_steps = st.fixed_dictionaries({}, optional={
    "text": st.one_of(clean_text, st.lists(clean_text, max_size=3)),
    "repeat": st.integers(0, 3),
    "delay": st.sampled_from([0, 0.01]),
    "reasoning": clean_text,
})
bad_steps = st.fixed_dictionaries({}, optional={
    "text": st.one_of(st.text(max_size=8), st.lists(st.text(max_size=4), max_size=3), anything),
    "repeat": st.one_of(st.integers(0, 3), st.sampled_from([10_001, -1, 2**70]), anything),
    "delay": st.one_of(st.sampled_from([0, 0.01]), st.sampled_from([61, -1, 1e300, Raw(b"NaN")]), anything),
    "reasoning": st.one_of(st.text(max_size=8), anything),
    "error": st.one_of(st.text(max_size=8), anything),
    "tool_calls": st.one_of(st.just([{"name": "calculator", "args": {"expression": "1+1"}}]), anything),
    "bogus": anything,
})
good_metadata = st.one_of(
    st.dictionaries(clean_words, st.one_of(clean_text, st.integers(-1000, 1000), st.booleans(), st.none()), max_size=3),
    st.fixed_dictionaries({"script": st.lists(good_steps, max_size=3)}),
)
# The values the server must refuse wherever they appear: non-finite numbers, invalid UTF-8,
# NUL, lone surrogates, integers past 64 bits (allowed, but must round-trip), nesting past 32.
nasty = st.one_of(
    st.sampled_from(RAW_TOKENS), st.sampled_from(ODD_TEXT), st.sampled_from(BIG_INTS),
    st.tuples(st.integers(33, 400), st.sampled_from(["dict", "list"]), scalars).map(_nest),
)
bad_metadata = st.one_of(
    st.dictionaries(keys, nasty, min_size=1, max_size=2),
    st.dictionaries(st.sampled_from(["\u0000", "k\u0000", "\ud800", "x\udfff"]), clean_text, min_size=1, max_size=1),
    st.dictionaries(keys, anything, min_size=1, max_size=3),
    st.fixed_dictionaries({"script": st.one_of(
        st.lists(bad_steps, min_size=1, max_size=3), st.lists(st.just({"text": "a"}), min_size=101, max_size=101),
        anything)}),
    st.just({"blob": "x" * 17_000}),
    anything,
)
good_schemas = st.sampled_from([{"type": "object", "properties": {"q": {"type": "string", "pattern": "^[a-z]*$"}}},
                                {"type": "string"}, {}, {"$defs": {"w": {"type": "string"}}, "$ref": "#/$defs/w"}])
bad_schemas = st.one_of(
    st.sampled_from([{"type": "string", "pattern": "("}, {"$ref": "http://example.com/schema.json"},
                     {"type": "nonsense"}, {"type": "number", "maximum": Raw(b"1e400")}]),
    st.builds(lambda v: {"type": "object", "default": v}, nasty),
    anything,
)
good_names = st.uuids().map(lambda u: f"prop-{u.hex[:12]}")
bad_names = st.one_of(texts, nasty, anything)

# Per endpoint: a valid value for each field, and a bad (or merely odd) one.
AGENT_FIELDS = {
    "name": (good_names, bad_names),
    "instructions": (clean_text, anything),
    "model": (st.just("scripted"), st.one_of(st.sampled_from(["", "no-such-model", "openai:"]), anything)),
    "tools": (st.sampled_from([["calculator"], []]), st.one_of(st.just(["nope"]), anything)),
    "input_description": (clean_text, anything),
    "output_description": (clean_text, anything),
    "input_schema": (good_schemas, bad_schemas),
    "output_schema": (good_schemas, bad_schemas),
    "metadata": (good_metadata, bad_metadata),
}
RUN_FIELDS = {
    "message": (clean_words, st.one_of(texts, anything)),
    "agent_id": (st.just(AGENT), st.one_of(st.just("agt_" + "0" * 26), texts, anything)),
    "tools": (st.sampled_from([["calculator"], []]), st.one_of(st.just(["nope"]), anything)),
    "model": (st.just("scripted"), anything),
    "user_id": (clean_words, st.one_of(texts, anything)),
    "metadata": (good_metadata, bad_metadata),
    # never true: a streamed answer of a run waiting for a human would not end
    "stream": (st.just(False), st.sampled_from(["maybe", [], {}, 2, None, "x", Raw(b"NaN")])),
    "multitask": (st.sampled_from(["reject", "enqueue"]), st.one_of(st.just("sometimes"), anything)),
    "thread_id": (st.nothing(), st.one_of(st.just("thr_" + "0" * 26), texts, anything)),
    "name": (st.nothing(), bad_names),
    "instructions": (st.nothing(), anything),
    "human_in_the_loop": (st.just(False), anything),
    "permission_mode": (st.just("autonomous"), st.one_of(st.sampled_from(["plan", "yolo"]), anything)),
    "history": (st.booleans(), anything),
    "memory": (st.booleans(), anything),
    "wait_timeout": (st.floats(1, 3600), st.one_of(st.floats(), st.sampled_from(RAW_TOKENS),
                                                   st.sampled_from(BIG_INTS), anything)),
    "wait_timeout_action": (st.sampled_from(["deny", "fail"]), st.one_of(st.just("explode"), anything)),
}
THREAD_FIELDS = {
    "user_id": (clean_words, st.one_of(texts, anything)),
    "metadata": (good_metadata, bad_metadata),
}
KNOWN = set(AGENT_FIELDS) | set(RUN_FIELDS) | set(THREAD_FIELDS)
unknown = st.dictionaries(st.text(min_size=1, max_size=8).filter(lambda k: k not in KNOWN), anything,
                          min_size=1, max_size=2)


def _valid(fields: dict[str, Any], required: tuple[str, ...]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {k: fields[k][0] for k in required},
        optional={k: good for k, (good, _) in fields.items() if k not in required and not good.is_empty},
    )


def _with_bad(fields: dict[str, Any], required: tuple[str, ...], n: int,
              among: tuple[str, ...] = ()) -> st.SearchStrategy[dict[str, Any]]:
    """A valid body with `n` fields (of `among`, default any) set to bad values (or removed, when required)."""
    choices = sorted(among or fields)

    @st.composite
    def spoil(draw: Any) -> dict[str, Any]:
        body = dict(draw(_valid(fields, required)))
        for key in draw(st.lists(st.sampled_from(choices), min_size=min(n, len(choices)), max_size=n, unique=True)):
            if key in required and draw(st.booleans()):
                body.pop(key, None)
            else:
                body[key] = draw(fields[key][1])
        return body

    return spoil()


NASTY_FIELDS = {
    "metadata": st.dictionaries(keys, nasty, min_size=1, max_size=2),
    "input_schema": st.builds(lambda v: {"type": "object", "default": v}, nasty),
    "output_schema": st.builds(lambda v: {"examples": [v]}, nasty),
    **{k: st.one_of(st.sampled_from(ODD_TEXT), nasty) for k in ("name", "message", "instructions", "user_id")},
}
"""The fields that get stored, with the values that must never be stored."""


def _with_nasty(fields: dict[str, Any], required: tuple[str, ...]) -> st.SearchStrategy[dict[str, Any]]:
    """A valid body with one stored field set to a value the server must refuse (or store exactly)."""
    among = sorted(k for k in NASTY_FIELDS if k in fields and not (k == "name" and k not in required))

    @st.composite
    def spoil(draw: Any) -> dict[str, Any]:
        body = dict(draw(_valid(fields, required)))
        key = draw(st.sampled_from(among))
        body[key] = draw(NASTY_FIELDS[key])
        return body

    return spoil()


def bodies(fields: dict[str, Any], required: tuple[str, ...] = ()) -> st.SearchStrategy[Any]:
    """Valid bodies, valid bodies with one or a few bad fields, unknown keys, and non-objects."""
    return st.one_of(
        _valid(fields, required),
        _with_bad(fields, required, 1),
        _with_nasty(fields, required),
        _with_nasty(fields, required),
        _with_bad(fields, required, min(3, len(fields))),
        st.builds(lambda body, extra: {**body, **extra}, _valid(fields, required), unknown),
        anything,
    )


STORED_AS = {
    "/v1/agents": {k: k for k in ("name", "instructions", "model", "tools", "input_description",
                                  "output_description", "input_schema", "output_schema", "metadata")},
    "/v1/runs": {"message": "original_prompt", "user_id": "user_id", "metadata": "metadata", "tools": "tools",
                 "model": "model"},
    "/v1/threads": {"user_id": "user_id", "metadata": "metadata"},
}
"""Fields a created resource must read back exactly as sent (the request field → the resource's)."""

ENDPOINTS = {
    "agents": ("/v1/agents", bodies(AGENT_FIELDS, ("name",))),
    "runs": ("/v1/runs", bodies(RUN_FIELDS, ("message", "agent_id"))),
    "threads": ("/v1/threads", bodies(THREAD_FIELDS)),
}


def check(server: ServerInThread, http: httpx.Client, path: str, raw: bytes) -> None:
    before = row_counts(server)
    r = http.post(path, content=raw, headers={"Content-Type": "application/json"})
    assert r.status_code < 500, (r.status_code, raw[:300], r.text[:300])
    event(f"status {r.status_code}")
    if r.status_code >= 400:
        error = r.json()["error"]
        assert isinstance(error["code"], str) and error["code"], (raw[:300], r.text[:300])
        assert isinstance(error["message"], str) and error["message"], (raw[:300], r.text[:300])
        assert "field" in error and (error["field"] is None or isinstance(error["field"], str)), r.text[:300]
        assert row_counts(server) == before, (r.status_code, raw[:300], r.text[:300])
        return
    assert r.status_code in (200, 201), (r.status_code, raw[:300], r.text[:300])
    created = r.json()
    got = http.get(f"{path}/{created['id']}")
    assert got.status_code == 200, (raw[:300], got.text[:300])
    # What was accepted is stored as sent: nothing was silently rewritten (NaN into null, …).
    sent = json.loads(raw)
    for field, stored_as in STORED_AS[path].items():
        if sent.get(field) is not None:  # null means "the default"
            faithful = got.json()[stored_as] == sent[field]
            assert faithful, (field, raw[:300], got.text[:300])
    listed = http.get(path, params={"limit": 100})
    assert listed.status_code == 200, (raw[:300], listed.text[:300])


@pytest.mark.parametrize("endpoint", list(ENDPOINTS))
@PROPERTY_SETTINGS
@given(data=st.data())
def test_generated_bodies_never_500_and_refusals_write_nothing(server, http, agent_id, endpoint, data):
    path, strategy = ENDPOINTS[endpoint]
    check(server, http, path, dump(data.draw(strategy, label="body"), agent_id))


@pytest.mark.parametrize("path", ["/v1/agents", "/v1/runs", "/v1/threads"])
def test_lists_answer_after_the_generated_bodies(http, path):
    r = http.get(path, params={"limit": 100})
    assert r.status_code == 200, r.text[:300]
    assert all(isinstance(item["id"], str) for item in r.json()["data"])
