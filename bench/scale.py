"""Runyard at scale: list and event reads on a database of 1M runs / 20M events. Not a test.

    python -m bench.scale [--runs 1000000] [--events-per-run 20] [--dialect sqlite|postgresql|both]

Per dialect:
1. A fresh database, migrated (`runyard.store.migrate.upgrade`, so every index the migrations
   define is in place before a row goes in). `runyard serve` starts once on it, so the server
   bootstraps its own org ("default") and the admin key (ADMIN_KEY), then stops.
2. Seeds in bulk, straight into the tables: SQLite with the stdlib sqlite3 (executemany, one
   transaction per chunk, journal off and synchronous=OFF while seeding, WAL again after);
   PostgreSQL with asyncpg COPY (`copy_records_to_table`), then VACUUM ANALYZE (what autovacuum
   would do soon after such a load). Four orgs (85 % of the rows in the admin key's), 100 agents,
   10,000 threads, 1,000 users, 90 days of runs (mostly completed; failed, cancelled, waiting,
   pending, a few running), two-three metadata keys, and per run a gapless event log 1..last_seq
   shaped like the worker's (run.queued, run.started, tools.declared, deltas, tool calls, usage,
   run.completed | run.failed | run.cancelled | run.waiting). Open waits for the waiting runs.
3. Starts `runyard serve --no-worker` on it (ServerProcess's command with `--no-worker`: an
   embedded worker would claim the seeded pending runs and write while we measure) and times
   sequential keep-alive requests (http.client), warm-up first, filter values drawn at random
   per request.
4. For every query, the SQL the server runs (the store function's own statement, captured by
   calling it on a recording connection and compiled with literal binds), its plan (EXPLAIN
   QUERY PLAN on SQLite, EXPLAIN (ANALYZE, BUFFERS) on PostgreSQL) and the index it uses; table
   scans and sorts (temp B-trees) are flagged.
5. One table per dialect: query | p50 | p95 | index | target (p95 <= 20 ms) | met/MISSED.

Besides the admin key's org, a few queries run as the smallest org (1 % of the rows, its key
`bench_key("initech")`), and `GET /healthz` gives the floor (HTTP + app, no query) so a busy
machine shows in the table. On PostgreSQL each plan is also checked after five executions of the
prepared statement (plan_cache_mode=auto may switch the pooled connections to a generic plan);
a different plan is printed and flagged.

Experiments on a kept copy: `--keep` leaves the database, `--reuse` skips seeding, `--setup-sql`
runs statements (e.g. a CREATE INDEX, an ANALYZE) before measuring, `--only REGEX` picks queries.
Seeding speed on this 2-core machine, idle: 200k runs in 28 s (SQLite) and 43 s (PostgreSQL),
so ~2.5 and ~3.5 min for 1M runs / 20M events; 1M took 8 and 7 min while other benchmarks
shared the machine. The databases are ~5.6 GiB (SQLite) and ~6.6 GiB (PostgreSQL).
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import http.client
import json
import multiprocessing
import os
import random
import re
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import repeat
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy.dialects import postgresql as pg_dialects
from sqlalchemy.dialects import sqlite as sqlite_dialects

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from support.postgres import PG_ADMIN, url_of  # noqa: E402
from support.servers import ADMIN_KEY, ServerProcess, free_port  # noqa: E402

from runyard.domain import RUN_OPTION_DEFAULTS  # noqa: E402
from runyard.server.queries import parse_statuses  # noqa: E402
from runyard.store import events as events_store  # noqa: E402
from runyard.store import runs as runs_store  # noqa: E402
from runyard.store.keys import hash_key  # noqa: E402
from runyard.store.pages import encode_cursor  # noqa: E402

TARGET_MS = 20.0
HEADERS = {"Authorization": f"Bearer {ADMIN_KEY}"}
DAYS = 90
CHUNK = 10_000
"""Runs per seeding chunk (one transaction / one COPY round each)."""

# The other orgs and their share of the rows; the bootstrapped "default" org gets the rest.
OTHER_ORGS = [("acme", 0.09), ("globex", 0.05), ("initech", 0.01)]
MAIN_SHARE = 0.85
AGENTS = {"main": 80, "acme": 10, "globex": 7, "initech": 3}
THREADS = {"main": 8500, "acme": 900, "globex": 500, "initech": 100}
USERS = {"main": 850, "acme": 90, "globex": 50, "initech": 10}
CUSTOMERS = [f"cust_{i:04d}" for i in range(500)]
ENVS = (("prod", 0.75), ("staging", 0.2), ("dev", 0.05))
SOURCES = ("api", "slack", "web", "cron")
MODELS = ("openai:gpt-4.1-mini", "anthropic:claude-sonnet-4-5", "openai:gpt-4.1", "scripted")
TOOLS = ("current_time", "calculator", "http_get", "sleep")
STATUSES = ("pending", "running", "waiting", "completed", "failed", "cancelled")
# (status, weight) by age: the last 6 hours hold the queue; older runs mostly ended.
RECENT_STATUS = (("pending", 35), ("running", 5), ("waiting", 5), ("completed", 50), ("failed", 4), ("cancelled", 1))
OLD_STATUS = (("pending", 0.3), ("waiting", 1.5), ("completed", 91.0), ("failed", 5.0), ("cancelled", 2.2))
RECENT_SECONDS = 6 * 3600
WORKERS = [f"wrk_{i:02d}-{random.Random(i).getrandbits(32):08x}" for i in range(16)]
EMPTY_USAGE_JSON = json.dumps(runs_store.EMPTY_USAGE, separators=(", ", ": "))

RUNS_COLUMNS = (
    "id", "org_id", "agent_id", "thread_id", "status", "waiting_for", "original_prompt", "config", "output", "error",
    "user_id", "metadata", "model", "usage", "created_at", "started_at", "completed_at", "failed_at", "cancelled_at",
    "attempt", "lost_leases", "worker_id", "lease_until", "cancel_requested", "trace_id", "last_seq",
    "pending_messages",
)  # fmt: skip
EVENTS_COLUMNS = ("run_id", "seq", "type", "data", "created_at")
WAITS_COLUMNS = (
    "id", "org_id", "run_id", "user_id", "kind", "tool_call_id", "request", "answer_schema", "status", "answer",
    "resolved_by", "created_at", "resolved_at", "expires_at", "timeout_action",
)  # fmt: skip
AGENTS_COLUMNS = (
    "id", "org_id", "name", "instructions", "model", "tools", "input_description", "output_description",
    "input_schema", "output_schema", "metadata", "created_at", "updated_at",
)  # fmt: skip
THREADS_COLUMNS = ("id", "org_id", "user_id", "metadata", "created_at")


SMALL_ORG = "initech"
"""The smallest org (1 % of the rows): a tenant whose rows are few among many."""


def bench_key(org_name: str) -> str:
    """The API key the seed gives each other org, so the benchmark can query as it too."""
    return f"ryk_bench_{org_name}_key"


def log(message: str) -> None:
    print(message, flush=True)


# ---------------------------------------------------------------------------------------------
# Ids like runyard.store.ids: prefix + 26 Crockford base32 chars of (48-bit ms << 80 | 80 random bits).

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"
_PAIRS = [a + b for a in _ALPHABET for b in _ALPHABET]


def _base32_26(value: int) -> str:
    # 26 chars = 13 pairs of 10 bits, most significant first.
    return "".join(_PAIRS[(value >> shift) & 1023] for shift in range(120, -1, -10))


class Ids:
    """Time-sortable ids, strictly increasing in the order they are made (like `new_id`)."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.last: dict[str, int] = {}

    def make(self, prefix: str, ms: int) -> str:
        value = (ms << 80) | self.rng.getrandbits(80)
        last = self.last.get(prefix, 0)
        if value <= last:
            value = last + 1
        self.last[prefix] = value
        return f"{prefix}_{_base32_26(value)}"


EPOCH = datetime(1970, 1, 1)


def naive(us: int) -> datetime:
    """Epoch microseconds as a naive UTC datetime (what UTCDateTime stores)."""
    return EPOCH + timedelta(microseconds=us)


def _same(value: Any) -> Any:
    return value


def sqlite_ts(value: datetime | None) -> str | None:
    """SQLAlchemy's SQLite DATETIME storage format."""
    return None if value is None else value.isoformat(" ", "microseconds")


def _cum(weights: list[float]) -> list[float]:
    out, total = [], 0.0
    for w in weights:
        total += w
        out.append(total)
    return out


def _pick(rng: random.Random, items: list[Any], cum: list[float]) -> Any:
    return items[bisect.bisect_right(cum, rng.random() * cum[-1])]


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(", ", ": "))


# ---------------------------------------------------------------------------------------------
# The data set.


PROMPTS = [
    "Summarise the attached support ticket #{n} and propose a reply",
    "What is the status of order {n}? Check the shipping API and answer the customer",
    "Draft a follow-up email for lead {n} based on our last call notes",
    "Classify ticket {n} into billing, bug, feature request or other, with a one-line reason",
    "Compute the invoice total for account {n} including 8.5% tax and the volume discount",
    "Translate the release notes for version 3.{n} into German and French",
    "Review pull request #{n} for security issues and list them by severity",
    "Extract the action items from meeting transcript {n}",
]
DELTAS = [
    "Sure", ", here", " is", " a", " short", " summary", " of", " the", " ticket", ":", "\n\n", "The customer",
    " reports", " that", " the", " export", " fails", " with", " a timeout", " after", " about", " 30 seconds",
    ".", " I", " checked", " the", " logs", " and", " found", " two", " retries", " per", " request", " which",
    " doubles", " the", " load", ". ", "Suggested", " reply", ": we", " have", " raised", " the", " limit",
]  # fmt: skip
REASONING = [
    "The user wants a summary.", " I should check the order first.", " The total needs tax applied.",
    " Two tools are relevant here.", " Let me verify the dates.",
]  # fmt: skip
OUTPUTS = [
    "The customer reports that CSV exports time out after ~30 s; the retries double the load. Suggested reply: we "
    "raised the export limit and will follow up once the fix ships on Thursday.",
    "Order {n} left the warehouse yesterday and is due on Friday; tracking number 1Z{n}X. The customer was told.",
    "Total: 1,284.50 USD (1,200.00 + 8.5% tax, minus 18.50 volume discount).",
    "Action items: (1) Dana sends the revised quote by Monday; (2) Lee books the security review; (3) follow up in "
    "two weeks.",
]  # fmt: skip
ERRORS = [
    "model request failed: 429 Too Many Requests (rate limit exceeded, retry after 20s)",
    "tool http_get: timed out after 10.0 s",
    "output did not match the agent's output_schema after 3 retries: 'total' is a required property",
    "lease expired 3 times (max_attempts): the run's workers were lost",
]
INSTRUCTIONS = (
    "You are a support assistant for {name}. Answer in the customer's language, be concise and "
    "friendly, never promise refunds without approval, and cite the ticket or order number you "
    "used. When a tool fails, say so plainly and suggest the next step. Keep answers under 200 "
    "words unless the user asks for more detail."
)


def tool_declaration(name: str) -> dict[str, Any]:
    params = {
        "current_time": {"type": "object", "properties": {"timezone": {"type": "string"}}},
        "calculator": {"type": "object", "properties": {"expression": {"type": "string"}}, "required": ["expression"]},
        "http_get": {"type": "object", "properties": {"url": {"type": "string"}}, "required": ["url"]},
        "sleep": {"type": "object", "properties": {"seconds": {"type": "number"}}, "required": ["seconds"]},
    }[name]
    return {
        "name": name,
        "description": f"The built-in {name} tool.",
        "parameters": {**params, "additionalProperties": False},
        "side_effects": name == "http_get",
    }


@dataclass
class Org:
    key: str  # "main", "acme", …
    id: str
    name: str
    share: float
    agents: list[dict[str, Any]] = field(default_factory=list)
    agent_cum: list[float] = field(default_factory=list)
    threads: list[tuple[str, str | None]] = field(default_factory=list)  # (thread id, user id)
    thread_cum: list[float] = field(default_factory=list)
    users: list[str] = field(default_factory=list)


class World:
    """Everything but the runs: orgs, agents, threads, users; and the run/event generator."""

    def __init__(self, main_org_id: str, n_runs: int, events_per_run: int, seed: int, now_us: int) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.ids = Ids(random.Random(seed + 1))
        self.n_runs = n_runs
        self.epr = events_per_run
        self.now_us = now_us
        self.start_us = now_us - DAYS * 86400 * 1_000_000
        rng = self.rng
        self.orgs = [Org("main", main_org_id, "default", MAIN_SHARE)]
        setup_us = self.start_us - 40 * 86400 * 1_000_000
        for name, share in OTHER_ORGS:
            self.orgs.append(Org(name, self.ids.make("org", setup_us // 1000), name, share))
        self.org_cum = _cum([o.share for o in self.orgs])
        user_no = 0
        for org in self.orgs:
            for i in range(AGENTS[org.key]):
                created = setup_us + rng.randrange(30 * 86400 * 1_000_000)
                tools = sorted(rng.sample(TOOLS, rng.randrange(0, 4)))
                model = MODELS[i % len(MODELS)]
                instructions = INSTRUCTIONS.format(name=org.name)
                config = {
                    "instructions": instructions,
                    "tools": tools,
                    "output_schema": None,
                    "script": None,
                    **RUN_OPTION_DEFAULTS,
                }
                org.agents.append(
                    {
                        "id": self.ids.make("agt", created // 1000),
                        "name": f"{org.name}-agent-{i:03d}",
                        "instructions": instructions,
                        "model": model,
                        "tools": tools,
                        "created": created,
                        "config_json": _dumps(config),
                        "declared_json": _dumps({"tools": [tool_declaration(t) for t in tools]}),
                        "hitl": i % 7 == 0,
                    }
                )
            # A few agents take most of the traffic (Zipf-like).
            org.agent_cum = _cum([1 / (i + 1) ** 0.9 for i in range(len(org.agents))])
            org.users = [f"user_{user_no + i:05d}" for i in range(USERS[org.key])]
            user_no += USERS[org.key]
            user_cum = _cum([1 / (i + 1) ** 0.5 for i in range(len(org.users))])
            for _ in range(THREADS[org.key]):
                created = self.start_us - rng.randrange(30 * 86400 * 1_000_000)
                user = None if rng.random() < 0.05 else _pick(rng, org.users, user_cum)
                org.threads.append((self.ids.make("thr", created // 1000), user, created))  # type: ignore[arg-type]
            org.threads.sort(key=lambda t: t[0])
            org.thread_cum = _cum([rng.paretovariate(1.5) for _ in org.threads])

    # Rows of the small tables, in `ts(datetime)` form.
    def agent_rows(self, ts: Callable[[datetime | None], Any]) -> list[tuple[Any, ...]]:
        rows = []
        for org in self.orgs:
            for a in org.agents:
                created = ts(naive(a["created"]))
                rows.append(
                    (a["id"], org.id, a["name"], a["instructions"], a["model"], _dumps(a["tools"]), None, None,
                     None, None, _dumps({"team": org.name}), created, created)
                )  # fmt: skip
        return rows

    def thread_rows(self, ts: Callable[[datetime | None], Any]) -> list[tuple[Any, ...]]:
        rows = []
        for org in self.orgs:
            for thread_id, user, created in org.threads:  # type: ignore[misc]
                rows.append((thread_id, org.id, user, _dumps({"channel": "support"}), ts(naive(created))))
        rows.sort(key=lambda r: r[0])
        return rows

    def other_org_rows(
        self, ts: Callable[[datetime | None], Any]
    ) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
        orgs, keys = [], []
        created = ts(naive(self.start_us - 40 * 86400 * 1_000_000))
        for org in self.orgs[1:]:
            orgs.append((org.id, org.name, created))
            key = bench_key(org.name)
            keys.append((self.ids.make("key", self.start_us // 1000), org.id, hash_key(key), key[:8], "admin", created))
        return orgs, keys

    # The runs.
    @property
    def n_chunks(self) -> int:
        return -(-self.n_runs // CHUNK)

    def chunk(self, k: int, dialect: str) -> tuple[list[tuple], list[tuple], list[tuple]]:
        """Chunk k of n_chunks: (runs, events, waits) rows of the k-th slice of the 90 days, oldest first.

        Each chunk has its own seeded generator, so chunks can be made in any process, in any order."""
        ts = sqlite_ts if dialect == "sqlite" else _same
        rng = random.Random(self.seed * 1_000_003 + k)
        ids = Ids(random.Random(self.seed * 1_000_033 + k))
        n = min(CHUNK, self.n_runs - k * CHUNK)
        span = self.now_us - 60_000_000 - self.start_us
        lo = self.start_us + span * k // self.n_chunks
        hi = self.start_us + span * (k + 1) // self.n_chunks
        runs_rows: list[tuple] = []
        events_rows: list[tuple] = []
        waits_rows: list[tuple] = []
        r = rng.random
        for created in sorted(lo + int(r() * (hi - lo)) for _ in range(n)):
            self._run(rng, ids, created, ts, runs_rows, events_rows, waits_rows)
        return runs_rows, events_rows, waits_rows

    def _run(self, rng: random.Random, ids: Ids, created: int, ts: Callable[[datetime | None], Any],
             runs_rows: list, events_rows: list, waits_rows: list) -> None:  # fmt: skip
        r = rng.random
        org = self.orgs[bisect.bisect_right(self.org_cum, r() * self.org_cum[-1])]
        agent = _pick(rng, org.agents, org.agent_cum)
        thread_id, user_id, _ = _pick(rng, org.threads, org.thread_cum)
        age = self.now_us - created
        table = RECENT_STATUS if age < RECENT_SECONDS * 1_000_000 else OLD_STATUS
        status = _weighted(rng, table)
        if status == "waiting" and not agent["hitl"] and r() < 0.5:
            status = "completed"  # mostly agents with humans in the loop wait
        run_id = ids.make("run", created // 1000)
        n_prompt = 10_000 + int(r() * 89_999)
        prompt = PROMPTS[n_prompt % len(PROMPTS)].format(n=n_prompt)
        metadata = f'{{"env": "{_weighted(rng, ENVS)}", "customer": "{CUSTOMERS[int(r() * len(CUSTOMERS))]}"'
        if r() < 0.5:
            metadata += f', "source": "{SOURCES[int(r() * len(SOURCES))]}"'
        metadata += "}"
        queued_delay = 5_000 + int(r() * 395_000) if status != "pending" else 0
        started = created + queued_delay if status != "pending" else None
        duration = int(rng.lognormvariate(15.5, 0.8))  # median ~5 s
        ended = min(started + duration, self.now_us) if started is not None else None
        epr = self.epr
        if status == "pending":
            n_events = 1
        elif status == "running":
            n_events = 3 + int(r() * (max(3, epr) - 2))
        else:
            n_events = max(6, epr - 10) + int(r() * 21)
        in_tok = 400 + int(r() * 5600)
        out_tok = 50 + int(r() * 850)
        requests = max(1, (n_events - 4) // 6)
        if status == "pending":
            usage_json = EMPTY_USAGE_JSON
        else:
            usage_json = (
                f'{{"input_tokens": {in_tok * requests}, "output_tokens": {out_tok * requests}, '
                f'"cache_read_tokens": {(in_tok // 2) * (requests - 1)}, "cache_write_tokens": 0, '
                f'"reasoning_tokens": 0, "requests": {requests}, '
                f'"tool_calls": {min(len(agent["tools"]), requests - 1)}, '
                f'"cost_usd": {round((in_tok * 0.4 + out_tok * 1.6) * requests / 1e6, 6)}}}'
            )
        output = error = waiting_for = None
        completed_at = failed_at = cancelled_at = None
        attempt = 0 if status == "pending" else 1
        lost_leases = 0
        worker_id = lease_until = None
        if status == "completed":
            output = _dumps(rng.choice(OUTPUTS).format(n=n_prompt))
            completed_at = ended
            if r() < 0.01:
                attempt, lost_leases = 2, 1
        elif status == "failed":
            error = rng.choice(ERRORS)
            failed_at = ended
        elif status == "cancelled":
            cancelled_at = ended
        elif status == "waiting":
            waiting_for = rng.choice(("approval", "question", "input"))
        elif status == "running":
            worker_id = WORKERS[int(r() * len(WORKERS))]
            lease_until = self.now_us / 1e6 + 10.0
        worker = worker_id or WORKERS[int(r() * len(WORKERS))]
        end_us = ended if ended is not None else (started or created) + 1000
        # The event log, 1..n_events, gapless. Like the worker's flushes, a few events at a time
        # share one created_at.
        types, datas = self._events(rng, status, n_events, agent, thread_id, worker, output, error, usage_json,
                                    waiting_for)  # fmt: skip
        t_start = started if started is not None else created
        created_ts = ts(naive(created))
        started_ts = ts(naive(started)) if started is not None else None
        times = [created_ts]
        if n_events > 1:
            times.append(started_ts or created_ts)
        steps = max(1, -(-(n_events - 2) // 4))
        while len(times) < n_events:
            at = ts(naive(t_start + (end_us - t_start) * (len(times) // 4 + 1) // (steps + 1)))
            times.extend([at] * min(1 + int(r() * 6), n_events - len(times)))
        events_rows.extend(zip(repeat(run_id), range(1, n_events + 1), types, datas, times))
        if status == "waiting":
            wait_created = ts(naive(end_us))
            kind = waiting_for
            call_id = f"call_{rng.getrandbits(48):012x}"
            if kind == "approval":
                request = {"tool_call_id": call_id, "name": "http_get", "args": {"url": "https://api.example.com/x"}}
                schema = {"type": "object", "properties": {"decision": {"enum": ["allow", "deny"]}},
                          "required": ["decision"]}  # fmt: skip
            elif kind == "question":
                request = {"questions": [{"question": "Which account should I use?", "options": ["EU", "US"]}]}
                schema = {"type": "object", "properties": {"answers": {"type": "array"}}, "required": ["answers"]}
            else:
                request = {"prompt": "Paste the error message you see"}
                schema = {"type": "object", "properties": {"content": {"type": "string"}}, "required": ["content"]}
            waits_rows.append(
                (ids.make("wait", end_us // 1000), org.id, run_id, user_id, kind, call_id, _dumps(request),
                 _dumps(schema), "open", None, None, wait_created, None, None, None)
            )  # fmt: skip
        runs_rows.append(
            (run_id, org.id, agent["id"], thread_id, status, waiting_for, prompt, agent["config_json"], output, error,
             user_id, metadata, agent["model"], usage_json, created_ts, started_ts,
             ts(naive(completed_at)) if completed_at is not None else None,
             ts(naive(failed_at)) if failed_at is not None else None,
             ts(naive(cancelled_at)) if cancelled_at is not None else None,
             attempt, lost_leases, worker_id, lease_until, status == "cancelled", f"{rng.getrandbits(128):032x}",
             n_events, "[]")
        )  # fmt: skip

    _middle_cache: dict[tuple[int, int], list[tuple[str, str]]] = {}

    def _events(self, rng: random.Random, status: str, n: int, agent: dict[str, Any], thread_id: str, worker: str,
                output: str | None, error: str | None, usage_json: str, waiting_for: str | None
                ) -> tuple[list[str], list[str]]:  # fmt: skip
        """The types and data (JSON) of a run's n events."""
        queued = f'{{"agent_id": "{agent["id"]}", "thread_id": "{thread_id}"}}'
        if n == 1:
            return ["run.queued"], [queued]
        types = ["run.queued", "run.started", "tools.declared"]
        datas = [queued, f'{{"attempt": 1, "worker_id": "{worker}"}}', agent["declared_json"]]
        if status == "completed":
            tail = [("run.completed", f'{{"output": {output}, "usage": {usage_json}}}')]
        elif status == "failed":
            tail = [("run.failed", f'{{"error": {_dumps(error)}, "usage": {usage_json}}}')]
        elif status == "cancelled":
            tail = [("run.cancel_requested", "{}"), ("run.cancelled", f'{{"output": null, "usage": {usage_json}}}')]
        elif status == "waiting":
            tail = [("run.waiting", f'{{"waiting_for": "{waiting_for}", "waits": []}}')]
        else:
            tail = []
        m = max(0, n - len(types) - len(tail))
        key = (rng.randrange(4), m)
        middle = self._middle_cache.get(key)
        if middle is None:
            middle = self._middle_cache[key] = _middle(*key)
        types.extend(t for t, _ in middle)
        datas.extend(d for _, d in middle)
        types.extend(t for t, _ in tail)
        datas.extend(d for _, d in tail)
        return types[:n], datas[:n]


def _middle(style: int, m: int) -> list[tuple[str, str]]:
    """The body of a run's log: turns of deltas, tool calls and usage, cut to `m` events."""
    out: list[tuple[str, str]] = []
    i = style * 7
    usage = '{"model": "gpt-4.1-mini", "input_tokens": 1830, "output_tokens": 212, "cache_read_tokens": 0, ' \
            '"cache_write_tokens": 0, "reasoning_tokens": 0, "cost_usd": 0.001071}'  # fmt: skip
    while len(out) < m:
        if style % 2 == 0:
            out.append(("reasoning.delta", _dumps({"delta": REASONING[i % len(REASONING)]})))
        if style >= 2:
            call = f"call_{i:06d}"
            out.append(("tool.call", _dumps({"tool_call_id": call, "name": "calculator",
                                              "args": {"expression": f"{i} * 1.085"}})))  # fmt: skip
            out.append(("usage", usage))
            out.append(("tool.result", _dumps({"tool_call_id": call, "name": "calculator", "result": i * 1.085})))
        text = []
        for _ in range(8):
            d = DELTAS[i % len(DELTAS)]
            text.append(d)
            out.append(("message.delta", _dumps({"delta": d})))
            i += 1
        out.append(("message.completed", _dumps({"text": "".join(text)})))
        out.append(("usage", usage))
    return out[:m]


def _weighted(rng: random.Random, table: tuple[tuple[str, float], ...]) -> str:
    total = sum(w for _, w in table)
    x = rng.random() * total
    for value, w in table:
        x -= w
        if x < 0:
            return value
    return table[-1][0]


_WORLD: World | None = None


def _make_chunk(job: tuple[int, str]) -> tuple[list[tuple], list[tuple], list[tuple]]:
    assert _WORLD is not None
    return _WORLD.chunk(*job)


def produce(world: World, dialect: str, workers: int) -> Iterator[tuple[list[tuple], list[tuple], list[tuple]]]:
    """The chunks in order, made by `workers` forked processes a few chunks ahead of the writer
    (Python builds rows at ~150k events/s a core: the writer must not wait on it)."""
    global _WORLD
    _WORLD = world
    jobs = [(k, dialect) for k in range(world.n_chunks)]
    if workers <= 0:
        for job in jobs:
            yield _make_chunk(job)
        return
    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("fork")) as pool:
        pending: deque[Future[Any]] = deque()
        for job in jobs:
            pending.append(pool.submit(_make_chunk, job))
            if len(pending) > workers + 1:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


class Progress:
    def __init__(self, total_runs: int) -> None:
        self.total = total_runs
        self.t0 = time.perf_counter()
        self.runs = self.events = 0
        self.next_report = 0.0

    def add(self, runs: int, events: int) -> None:
        self.runs += runs
        self.events += events
        elapsed = time.perf_counter() - self.t0
        if elapsed >= self.next_report or self.runs == self.total:
            self.next_report = elapsed + 10
            rate = self.runs / elapsed if elapsed else 0
            eta = (self.total - self.runs) / rate if rate else 0
            log(f"    {self.runs:>9,} / {self.total:,} runs, {self.events:>11,} events  {elapsed:6.1f} s  "
                f"({rate:,.0f} runs/s, {self.events / elapsed:,.0f} events/s, eta {eta:.0f} s)")  # fmt: skip


# ---------------------------------------------------------------------------------------------
# Databases.


@dataclass
class Target:
    dialect: str  # "sqlite" | "postgresql"
    url: str  # SQLAlchemy URL the server takes
    path: Path | None = None  # SQLite file
    database: str | None = None  # PostgreSQL database name

    @property
    def pg_dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:5432/{self.database}"


async def _migrate(url: str) -> None:
    from runyard.store.db import create_engine
    from runyard.store.migrate import upgrade

    engine = create_engine(url, pool_size=1, max_overflow=0)
    try:
        await upgrade(engine)
    finally:
        result = engine.dispose()
        if asyncio.iscoroutine(result):
            await result


async def _rollup(url: str) -> int:
    """Fill `usage_daily` from the seeded runs, as each run's end would have (the migration's backfill)."""
    from runyard.store.db import Store, create_engine
    from runyard.store.usage import backfill

    engine = create_engine(url, pool_size=1, max_overflow=0)
    try:
        return await Store(engine, bus=None).run_sync(lambda conn: backfill(conn, 1000.0))  # type: ignore[arg-type]
    finally:
        result = engine.dispose()
        if asyncio.iscoroutine(result):
            await result


async def _pg_admin(sql: str) -> None:
    admin = await asyncpg.connect(PG_ADMIN)
    try:
        await admin.execute(sql)
    finally:
        await admin.close()


def create_target(dialect: str, args: argparse.Namespace) -> Target:
    if dialect == "sqlite":
        path = Path(args.sqlite_path)
        if not args.reuse:
            for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
                p.unlink(missing_ok=True)
            path.parent.mkdir(parents=True, exist_ok=True)
        return Target("sqlite", f"sqlite+aiosqlite:///{path}", path=path)
    name = args.pg_db
    if not args.reuse:
        asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        asyncio.run(_pg_admin(f'CREATE DATABASE "{name}"'))
    return Target("postgresql", url_of(name), database=name)


def drop_target(target: Target) -> None:
    if target.path is not None:
        for p in (target.path, Path(f"{target.path}-wal"), Path(f"{target.path}-shm")):
            p.unlink(missing_ok=True)
    else:
        asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{target.database}" WITH (FORCE)'))


def db_size(target: Target) -> str:
    if target.path is not None:
        total = sum(p.stat().st_size for p in (target.path, Path(f"{target.path}-wal")) if p.exists())
        return f"{total / 2**30:.2f} GiB"

    async def size() -> str:
        conn = await asyncpg.connect(target.pg_dsn)
        try:
            total = await conn.fetchval("SELECT pg_database_size(current_database())")
            rows = await conn.fetch(
                "SELECT relname, pg_total_relation_size(oid) AS total, pg_relation_size(oid) AS heap FROM pg_class "
                "WHERE relname IN ('runs', 'events', 'threads', 'waits')"
            )
            parts = ", ".join(f"{r['relname']} {r['total'] / 2**30:.2f} GiB (heap {r['heap'] / 2**30:.2f})"
                              for r in sorted(rows, key=lambda r: -r["total"]))  # fmt: skip
            return f"{total / 2**30:.2f} GiB ({parts})"
        finally:
            await conn.close()

    return asyncio.run(size())


class ApiServer(ServerProcess):
    """ServerProcess's `runyard serve`, with `--no-worker`: an embedded worker would claim the
    seeded pending runs (and requeue the running ones) while we measure."""

    def start(self, tmp: Path, extra: tuple[str, ...] = ("--no-worker",)) -> ApiServer:  # type: ignore[override]
        self.port = free_port()
        env = {**os.environ, "RUNYARD_DATABASE_URL": self.db_url, "RUNYARD_API_KEY": ADMIN_KEY,
               "RUNYARD_PORT": str(self.port), **self.env}  # fmt: skip
        self.log = tmp / f"server-{self.port}.log"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "runyard", "serve", *extra], env=env, stdout=self.log.open("wb"),
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=1)
                c.request("GET", "/healthz")
                if c.getresponse().status == 200:
                    c.close()
                    return self
            except OSError:
                pass
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError(f"server process did not start: {self.log.read_text()}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()


def bootstrap(target: Target, tmp: Path) -> str:
    """Migrate, start the server once so it creates its org and the admin key, stop it; the org id."""
    asyncio.run(_migrate(target.url))
    srv = ApiServer(target.url).start(tmp)
    srv.stop()
    return _admin_org(target)


def _insert_sql(table: str, columns: tuple[str, ...]) -> str:
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"


def seed_sqlite(target: Target, world: World, workers: int) -> float:
    assert target.path is not None
    conn = sqlite3.connect(target.path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=OFF")
    conn.execute("PRAGMA synchronous=OFF")
    conn.execute("PRAGMA cache_size=-1048576")  # 1 GiB: the indexes being built stay in memory
    conn.execute("PRAGMA temp_store=MEMORY")
    t0 = time.perf_counter()
    orgs, keys = world.other_org_rows(sqlite_ts)
    conn.execute("BEGIN")
    conn.executemany(_insert_sql("orgs", ("id", "name", "created_at")), orgs)
    conn.executemany(_insert_sql("api_keys", ("id", "org_id", "key_hash", "prefix", "name", "created_at")), keys)
    conn.executemany(_insert_sql("agents", AGENTS_COLUMNS), world.agent_rows(sqlite_ts))
    conn.executemany(_insert_sql("threads", THREADS_COLUMNS), world.thread_rows(sqlite_ts))
    conn.execute("COMMIT")
    runs_sql, events_sql, waits_sql = (
        _insert_sql("runs", RUNS_COLUMNS), _insert_sql("events", EVENTS_COLUMNS), _insert_sql("waits", WAITS_COLUMNS)
    )  # fmt: skip
    progress = Progress(world.n_runs)
    for runs_rows, events_rows, waits_rows in produce(world, "sqlite", workers):
        conn.execute("BEGIN")
        conn.executemany(runs_sql, runs_rows)
        conn.executemany(events_sql, events_rows)
        conn.executemany(waits_sql, waits_rows)
        conn.execute("COMMIT")
        progress.add(len(runs_rows), len(events_rows))
    conn.execute("PRAGMA journal_mode=WAL")
    conn.close()
    return time.perf_counter() - t0


async def _seed_pg(target: Target, world: World, workers: int) -> tuple[float, float]:
    conn = await asyncpg.connect(target.pg_dsn)
    try:
        await conn.execute("SET synchronous_commit = off")
        t0 = time.perf_counter()
        orgs, keys = world.other_org_rows(lambda d: d)
        async with conn.transaction():
            await conn.copy_records_to_table("orgs", records=orgs, columns=["id", "name", "created_at"])
            await conn.copy_records_to_table(
                "api_keys", records=keys, columns=["id", "org_id", "key_hash", "prefix", "name", "created_at"]
            )
            await conn.copy_records_to_table("agents", records=world.agent_rows(lambda d: d), columns=AGENTS_COLUMNS)
            await conn.copy_records_to_table("threads", records=world.thread_rows(lambda d: d), columns=THREADS_COLUMNS)
        progress = Progress(world.n_runs)
        for runs_rows, events_rows, waits_rows in produce(world, "postgresql", workers):
            async with conn.transaction():
                await conn.copy_records_to_table("runs", records=runs_rows, columns=RUNS_COLUMNS)
                await conn.copy_records_to_table("events", records=events_rows, columns=EVENTS_COLUMNS)
                if waits_rows:
                    await conn.copy_records_to_table("waits", records=waits_rows, columns=WAITS_COLUMNS)
            progress.add(len(runs_rows), len(events_rows))
        seeded = time.perf_counter() - t0
        t1 = time.perf_counter()
        log("    VACUUM ANALYZE …")
        await conn.execute("VACUUM ANALYZE")
        return seeded, time.perf_counter() - t1
    finally:
        await conn.close()


# ---------------------------------------------------------------------------------------------
# What the benchmark draws its filter values from, read back from the seeded database.


@dataclass
class Sample:
    org_id: str
    agents: list[str]
    threads: list[str]
    users: list[str]
    runs: list[tuple[str, str, int]]  # (id, status, last_seq), a random sample of the org's runs
    first_us: int
    last_us: int
    counts: dict[str, int]
    small_org: str = ""
    small_users: list[str] = field(default_factory=list)

    def terminal_runs(self, min_seq: int = 11) -> list[str]:
        return [r for r, s, n in self.runs if s in ("completed", "failed", "cancelled") and n >= min_seq]


def _ts_us(value: Any) -> int:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return int((value.replace(tzinfo=None) - EPOCH).total_seconds() * 1_000_000)


def load_sample(target: Target, org_id: str) -> Sample:
    queries = {
        "agents": "SELECT id FROM agents WHERE org_id = {p}",
        "threads": "SELECT id FROM threads WHERE org_id = {p}",
        "users": "SELECT DISTINCT user_id FROM threads WHERE org_id = {p} AND user_id IS NOT NULL",
        "span": "SELECT min(created_at), max(created_at) FROM runs WHERE org_id = {p}",
        "status": "SELECT status, count(*) FROM runs WHERE org_id = {p} GROUP BY status",
        "totals": "SELECT (SELECT count(*) FROM runs), (SELECT sum(last_seq) FROM runs), "
        "(SELECT count(*) FROM events), (SELECT count(*) FROM waits)",
    }
    if target.path is not None:
        conn = sqlite3.connect(f"file:{target.path}?mode=ro", uri=True)
        q = {k: v.format(p="?") for k, v in queries.items()}
        res = {k: conn.execute(v, () if k == "totals" else (org_id,)).fetchall() for k, v in q.items()}
        res["runs"] = conn.execute(
            "SELECT id, status, last_seq FROM runs WHERE org_id = ? AND abs(random()) % 50 = 0", (org_id,)
        ).fetchall()
        conn.close()
    else:

        async def read() -> dict[str, Any]:
            conn = await asyncpg.connect(target.pg_dsn)
            try:
                out = {}
                for k, v in queries.items():
                    out[k] = [
                        tuple(r) for r in await conn.fetch(v.format(p="$1"), *(() if k == "totals" else (org_id,)))
                    ]
                out["runs"] = [
                    tuple(r)
                    for r in await conn.fetch(
                        "SELECT id, status, last_seq FROM runs TABLESAMPLE SYSTEM (2) WHERE org_id = $1", org_id
                    )
                ]
                return out
            finally:
                await conn.close()

        res = asyncio.run(read())
    ((first, last),) = res["span"]
    runs_n, seq_sum, events_n, waits_n = res["totals"][0]
    counts = {"runs": runs_n, "sum(last_seq)": int(seq_sum or 0), "events": events_n, "waits": waits_n}
    counts.update({f"org {s}": c for s, c in res["status"]})
    return Sample(
        org_id=org_id,
        agents=[r[0] for r in res["agents"]],
        threads=[r[0] for r in res["threads"]],
        users=[r[0] for r in res["users"]],
        runs=[(r[0], r[1], int(r[2])) for r in res["runs"]],
        first_us=_ts_us(first),
        last_us=_ts_us(last),
        counts=counts,
    )


def small_org(target: Target) -> tuple[str, list[str]]:
    """The small org's id and users; adds its bench key when missing (a database seeded earlier)."""
    key = bench_key(SMALL_ORG)
    find = "SELECT id FROM orgs WHERE name = {p}"
    users = "SELECT DISTINCT user_id FROM threads WHERE org_id = {p} AND user_id IS NOT NULL"
    has_key = "SELECT count(*) FROM api_keys WHERE key_hash = {p}"
    insert = "INSERT INTO api_keys (id, org_id, key_hash, prefix, name, created_at) VALUES ({p})"

    def key_row(org_id: str, now: Any) -> tuple[Any, ...]:
        return (f"key_bench{SMALL_ORG}", org_id, hash_key(key), key[:8], "bench", now)

    if target.path is not None:
        conn = sqlite3.connect(target.path, isolation_level=None)
        try:
            org_id = conn.execute(find.format(p="?"), (SMALL_ORG,)).fetchone()[0]
            if not conn.execute(has_key.format(p="?"), (hash_key(key),)).fetchone()[0]:
                conn.execute(insert.format(p="?, ?, ?, ?, ?, ?"), key_row(org_id, sqlite_ts(datetime.now())))
            return org_id, [r[0] for r in conn.execute(users.format(p="?"), (org_id,))]
        finally:
            conn.close()

    async def read() -> tuple[str, list[str]]:
        conn = await asyncpg.connect(target.pg_dsn)
        try:
            org_id = await conn.fetchval(find.format(p="$1"), SMALL_ORG)
            if not await conn.fetchval(has_key.format(p="$1"), hash_key(key)):
                await conn.execute(insert.format(p="$1, $2, $3, $4, $5, $6"), *key_row(org_id, datetime.now()))
            return org_id, [r[0] for r in await conn.fetch(users.format(p="$1"), org_id)]
        finally:
            await conn.close()

    return asyncio.run(read())


# ---------------------------------------------------------------------------------------------
# The queries: what to request, and which store calls the server makes for it.


@dataclass
class Request:
    path: str
    headers: dict[str, str]
    calls: list[tuple[Callable[..., Any], dict[str, Any]]]  # store functions and their keyword arguments
    sse: bool = False


@dataclass
class Query:
    name: str
    make: Callable[[random.Random], Request]
    after: Callable[[dict[str, Any]], None] | None = None  # sees each JSON answer (cursor walks)


def _list_kwargs(params: dict[str, str]) -> dict[str, Any]:
    """What routes/runs.py `list_runs` passes to `runs.list_` for these query parameters."""
    kwargs: dict[str, Any] = {"limit": int(params.get("limit", 20)), "metadata": {}}
    for key, value in params.items():
        if key == "status":
            kwargs["statuses"] = parse_statuses([value])
        elif key in ("agent_id", "thread_id", "user_id", "before", "after"):
            kwargs[key] = value
        elif key in ("created_after", "created_before"):
            kwargs[key] = datetime.fromisoformat(value)
        elif key.startswith("metadata["):
            kwargs["metadata"][key[len("metadata[") : -1]] = value
    return kwargs


def list_request(org_id: str, params: dict[str, str], headers: dict[str, str] = HEADERS) -> Request:
    path = "/v1/runs" + ("?" + urllib.parse.urlencode(params) if params else "")
    return Request(path, headers, [(runs_store.list_, {"org_id": org_id, **_list_kwargs(params)})])


def _iso(us: int) -> str:
    return naive(us).replace(tzinfo=UTC).isoformat().replace("+00:00", "Z")


def build_queries(s: Sample) -> list[Query]:
    org = s.org_id
    day = 86400 * 1_000_000

    def lst(gen: Callable[[random.Random], dict[str, str]]) -> Callable[[random.Random], Request]:
        return lambda rng: list_request(org, gen(rng))

    def random_time(rng: random.Random, margin: int = day) -> int:
        return rng.randrange(s.first_us + margin, s.last_us - margin)

    small_headers = {"Authorization": f"Bearer {bench_key(SMALL_ORG)}"}

    def small(gen: Callable[[random.Random], dict[str, str]]) -> Callable[[random.Random], Request]:
        return lambda rng: list_request(s.small_org, gen(rng), small_headers)

    walk: dict[str, str | None] = {"cursor": None}

    def walk_params(rng: random.Random) -> dict[str, str]:
        return {} if walk["cursor"] is None else {"before": walk["cursor"]}  # type: ignore[dict-item]

    def walk_after(body: dict[str, Any]) -> None:
        walk["cursor"] = body.get("next_cursor")

    terminal = s.terminal_runs()
    all_runs = [r for r, _, _ in s.runs]

    # GET /v1/usage over the whole seeded span (every run of the org), and narrower ones; its
    # statements are not captured for plans (it reads its own answers), so no plan is shown.
    span = {"from": _iso(s.first_us - day), "to": _iso(s.last_us + day)}
    usage_params: list[tuple[str, Callable[[random.Random], dict[str, str]]]] = [
        ("totals, all runs", lambda rng: span),
        ("group_by=day, all runs", lambda rng: {**span, "group_by": "day"}),
        ("group_by=agent, all runs", lambda rng: {**span, "group_by": "agent"}),
        ("group_by=user, all runs", lambda rng: {**span, "group_by": "user"}),
        ("agent_id, all runs", lambda rng: {**span, "agent_id": rng.choice(s.agents)}),
        (
            "1 day, group_by=model",
            lambda rng: (lambda t: {"from": _iso(t), "to": _iso(t + day), "group_by": "model"})(random_time(rng)),
        ),
    ]

    def usage(gen: Callable[[random.Random], dict[str, str]]) -> Callable[[random.Random], Request]:
        return lambda rng: Request("/v1/usage?" + urllib.parse.urlencode(gen(rng)), HEADERS, [])

    def events_request(rng: random.Random) -> Request:
        run_id = rng.choice(all_runs)
        return Request(
            f"/v1/runs/{run_id}/events?after_seq=10&limit=100",
            HEADERS,
            [(runs_store.get, {"org_id": org, "run_id": run_id}),
             (events_store.read, {"org_id": org, "run_id": run_id, "after_seq": 10, "limit": 101})],
        )  # fmt: skip

    def sse_request(rng: random.Random) -> Request:
        run_id = rng.choice(terminal)
        return Request(
            f"/v1/runs/{run_id}/events",
            {**HEADERS, "Accept": "text/event-stream", "Last-Event-ID": "10"},
            [(runs_store.get, {"org_id": org, "run_id": run_id}),
             (events_store.read, {"org_id": org, "run_id": run_id, "after_seq": 10, "limit": 1000})],
            sse=True,
        )  # fmt: skip

    queries = [
        Query("GET /healthz (floor: HTTP + app, no query)", lambda rng: Request("/healthz", HEADERS, [])),
        Query("list (no filter)", lst(lambda rng: {})),
        *(Query(f"status={st}", lst(lambda rng, st=st: {"status": st})) for st in STATUSES),
        Query("agent_id", lst(lambda rng: {"agent_id": rng.choice(s.agents)})),
        Query("thread_id", lst(lambda rng: {"thread_id": rng.choice(s.threads)})),
        Query("user_id", lst(lambda rng: {"user_id": rng.choice(s.users)})),
        Query("metadata[customer]", lst(lambda rng: {"metadata[customer]": rng.choice(CUSTOMERS)})),
        Query("metadata[env]=staging", lst(lambda rng: {"metadata[env]": "staging"})),
        Query("created_after (random)", lst(lambda rng: {"created_after": _iso(random_time(rng))})),
        Query("created_before (random)", lst(lambda rng: {"created_before": _iso(random_time(rng))})),
        Query(
            "created range (1 day)",
            lst(lambda rng: (lambda t: {"created_after": _iso(t), "created_before": _iso(t + day)})(random_time(rng))),
        ),
        Query(
            "status=failed+agent_id",
            lst(lambda rng: {"status": "failed", "agent_id": rng.choice(s.agents)}),
        ),
        Query(
            "status=completed+agent_id",
            lst(lambda rng: {"status": "completed", "agent_id": rng.choice(s.agents)}),
        ),
        Query(
            "status=waiting+agent_id",
            lst(lambda rng: {"status": "waiting", "agent_id": rng.choice(s.agents)}),
        ),
        Query("user_id+status=completed", lst(lambda rng: {"user_id": rng.choice(s.users), "status": "completed"})),
        Query(f"org {SMALL_ORG} (1 % of rows): no filter", small(lambda rng: {})),
        Query(f"org {SMALL_ORG}: status=failed", small(lambda rng: {"status": "failed"})),
        Query(f"org {SMALL_ORG}: user_id", small(lambda rng: {"user_id": rng.choice(s.small_users)})),
        Query("deep page (cursor walk, pages 21-220)", lst(walk_params), after=walk_after),
        Query("before=random run (any depth)", lst(lambda rng: {"before": encode_cursor(rng.choice(all_runs))})),
        *(Query(f"usage report: {name}", usage(params)) for name, params in usage_params),
        Query("events after_seq=10 limit=100", events_request),
        Query("SSE resume Last-Event-ID=10: first event", sse_request),
        Query("SSE resume Last-Event-ID=10: closed", sse_request),
    ]
    return queries


# ---------------------------------------------------------------------------------------------
# The client.


class Client:
    def __init__(self, port: int) -> None:
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)

    def get(self, req: Request) -> tuple[float, float, bytes]:
        """(ms to first event (SSE) or to the whole answer, ms to the end, body)."""
        for attempt in (1, 2):
            try:
                t0 = time.perf_counter()
                self.conn.request("GET", req.path, headers=req.headers)
                resp = self.conn.getresponse()
                first = None
                if req.sse and resp.status == 200:
                    chunks = []
                    while True:
                        line = resp.readline()
                        if not line:
                            break
                        if first is None and line.startswith(b"id:"):
                            first = time.perf_counter()
                        chunks.append(line)
                    body = b"".join(chunks)
                else:
                    body = resp.read()
                t1 = time.perf_counter()
                if resp.status != 200:
                    raise RuntimeError(f"GET {req.path}: {resp.status} {body[:300]!r}")
                if first is None:
                    first = t1
                return (first - t0) * 1000, (t1 - t0) * 1000, body
            except (http.client.RemoteDisconnected, ConnectionError, http.client.CannotSendRequest):
                self.conn.close()
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
                if attempt == 2:
                    raise
        raise AssertionError

    def close(self) -> None:
        self.conn.close()


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


@dataclass
class Result:
    query: Query
    p50: float
    p95: float
    first: Request
    rows: float  # mean items per answer
    plans: list[str] = field(default_factory=list)
    index: str = ""
    flags: list[str] = field(default_factory=list)
    db_ms: float | None = None


def measure(client: Client, q: Query, rng: random.Random, n: int, warmup: int) -> Result:
    samples: list[float] = []
    items: list[int] = []
    first: Request | None = None
    use_first = q.name.endswith("first event")
    for i in range(warmup + n):
        req = q.make(rng)
        if i == warmup:
            first = req
        to_first, to_end, body = client.get(req)
        if req.sse:
            items.append(body.count(b"\nid: ") + body.startswith(b"id: "))
        else:
            answer = json.loads(body)
            items.append(len(answer.get("data", ())))
            if q.after is not None:
                q.after(answer)
        if i >= warmup:
            samples.append(to_first if use_first else to_end)
    assert first is not None
    return Result(q, statistics.median(samples), pct(samples, 95), first, sum(items[warmup:]) / n)


# ---------------------------------------------------------------------------------------------
# Plans: the store function's own statement, compiled for the dialect, explained.


class _Recorder:
    """Stands in for the connection a store function takes: records each statement, returns no rows."""

    def __init__(self, dialect: Any) -> None:
        self.dialect = dialect
        self.statements: list[Any] = []

    async def execute(self, statement: Any, parameters: Any = None) -> Any:
        # Prebuilt statements get their values at execution, as bindparams: bind them here.
        if isinstance(parameters, list):
            parameters = parameters[0] if parameters else None
        self.statements.append(statement.params(parameters) if parameters else statement)
        return _NoRows()


class _NoRows(list):
    def one_or_none(self) -> None:
        return None

    def one(self) -> None:
        raise LookupError


@dataclass
class Statement:
    literal: str  # with the values inlined: what EXPLAIN reads
    prepared: str  # with $n placeholders, as the server's driver prepares it (PostgreSQL)
    values: list[str]  # the $n values as SQL literals


def _sql_literal(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return "'" + str(value).replace("'", "''") + "'"


def _inline(sql: str, values: list[str], dialect_name: str) -> str:
    """The compiled SQL with its placeholders (`?`, or `$n`) replaced by the values' literals,
    outside quoted strings; PostgreSQL's `$n::TYPE` casts stay."""
    out, i, quoted, n = [], 0, False, 0
    while i < len(sql):
        ch = sql[i]
        if ch == "'":
            quoted = not quoted
        elif not quoted and dialect_name == "sqlite" and ch == "?":
            out.append(values[n])
            n += 1
            i += 1
            continue
        elif not quoted and dialect_name != "sqlite" and ch == "$" and sql[i + 1 : i + 2].isdigit():
            m = re.match(r"\$(\d+)", sql[i:])
            assert m is not None
            out.append(values[int(m.group(1)) - 1])
            i += len(m.group(0))
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def statements_of(req: Request, dialect_name: str) -> list[Statement]:
    """The statements the store functions of this request run, compiled for the dialect."""
    dialect = sqlite_dialects.dialect() if dialect_name == "sqlite" else pg_dialects.asyncpg.dialect()
    out = []
    for fn, kwargs in req.calls:
        rec = _Recorder(dialect)
        kwargs = dict(kwargs)
        org_id = kwargs.pop("org_id")
        try:
            if fn is runs_store.get:
                asyncio.run(fn(rec, org_id, kwargs.pop("run_id")))
            elif fn is events_store.read:
                asyncio.run(fn(rec, org_id, kwargs.pop("run_id"), **kwargs))
            else:
                asyncio.run(fn(rec, org_id, **kwargs))
        except Exception:  # NotFound: the recorder returns no row; the statement is recorded
            pass
        for statement in rec.statements:
            compiled = statement.compile(dialect=dialect, compile_kwargs={"render_postcompile": True})
            params = compiled.construct_params()
            processors = compiled._bind_processors
            values = []
            for name in compiled.positiontup or []:
                value = params[name]
                if name in processors:
                    value = processors[name](value)
                values.append(_sql_literal(value))
            out.append(Statement(_inline(compiled.string, values, dialect_name), compiled.string, values))
    return out


def explain_sqlite(path: Path, sql: str) -> tuple[list[str], float]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = conn.execute("EXPLAIN QUERY PLAN " + sql).fetchall()
        depth = {0: -1}
        lines = []
        for node, parent, _, detail in rows:
            depth[node] = depth.get(parent, -1) + 1
            lines.append("  " * depth[node] + detail)
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            conn.execute(sql).fetchall()
            times.append((time.perf_counter() - t0) * 1000)
        return lines, min(times)
    finally:
        conn.close()


async def explain_pg(dsn: str, statements: list[Statement]) -> list[tuple[list[str], float, list[str] | None]]:
    """EXPLAIN ANALYZE of each statement with its values inlined (the custom plan of the first
    executions), and the plan a prepared statement gets once PostgreSQL's plan cache (auto
    mode) has seen it five times: the server's driver prepares each statement once per pooled
    connection, so from the sixth request on a connection it may run a generic plan. That one
    is returned only when it differs from the custom plan."""
    conn = await asyncpg.connect(dsn)
    try:
        out = []
        for st in statements:
            rows = await conn.fetch("EXPLAIN (ANALYZE, BUFFERS) " + st.literal)
            lines = [r[0] for r in rows]
            ms = next((float(m.group(1)) for line in lines if (m := re.search(r"Execution Time: ([\d.]+)", line))), 0.0)
            generic = None
            if st.values:
                await conn.execute(f"PREPARE bench_q AS {st.prepared}")
                try:
                    execute = f"EXECUTE bench_q({', '.join(st.values)})"
                    for _ in range(6):
                        await conn.fetch(execute)
                    later = [r[0] for r in await conn.fetch("EXPLAIN " + execute)]
                    custom = [r[0] for r in await conn.fetch("EXPLAIN " + st.literal)]
                    if _shape(later) != _shape(custom):
                        generic = later
                finally:
                    await conn.execute("DEALLOCATE bench_q")
            out.append((lines, ms, generic))
        return out
    finally:
        await conn.close()


def _shape(plan: list[str]) -> list[str]:
    """A plan's nodes and the indexes they read, without costs, conditions or values."""
    shape = []
    for line in plan:
        m = re.match(r"\s*(?:->\s*)?([A-Z][A-Za-z -]+?)(?: using (\w+))?(?: on (\w+))?(?: \w+)?\s+\(cost", line)
        if m:
            shape.append(" ".join(x for x in m.groups() if x))
    return shape


def classify(dialect: str, plan: list[str]) -> tuple[str, list[str]]:
    """The index the plan reads the main table by, and warnings (table scan, sort)."""
    indexes, flags = [], []
    for line in plan:
        text = line.strip()
        if dialect == "sqlite":
            m = re.match(
                r"(SEARCH|SCAN) (\w+)(?: AS \w+)?(?: USING (?:COVERING )?INDEX (\w+)| USING (INTEGER )?PRIMARY KEY)?",
                text,
            )
            if m:
                verb, table, index = m.group(1), m.group(2), m.group(3)
                name = index or ("PRIMARY KEY" if "PRIMARY KEY" in text else None)
                indexes.append(f"{name or 'none'}")
                if verb == "SCAN" and name is None:
                    flags.append(f"FULL TABLE SCAN of {table}")
                elif verb == "SCAN":
                    flags.append(f"full index scan of {table} ({name})")
            if "TEMP B-TREE" in text:
                flags.append(text.replace("USE ", "").lower())
        else:
            m = re.search(r"(Index Only Scan|Index Scan)(?: Backward)? using (\w+) on (\w+)", text)
            if m:
                indexes.append(m.group(2))
            m = re.search(r"Bitmap Index Scan on (\w+)", text)
            if m:
                indexes.append(f"{m.group(1)} (bitmap)")
            m = re.search(r"Seq Scan on (\w+)", text)
            if m:
                indexes.append("none")
                flags.append(f"SEQ SCAN of {m.group(1)}")
            if re.match(r"(->\s*)?(Incremental )?Sort\s+\(", text):
                flags.append("sort")
            m = re.search(r"Rows Removed by Filter: (\d+)", text)
            if m and int(m.group(1)) > 1000:
                flags.append(f"{int(m.group(1)):,} rows filtered out")
    return ", ".join(dict.fromkeys(indexes)), list(dict.fromkeys(flags))


def _sqlite_residual(sql: str, plan: list[str]) -> list[str]:
    """SQLite's plan names the columns it seeks the index on, not the ones it then tests row by
    row: the WHERE columns of the main table that the seek does not use."""
    table = re.search(r"FROM (\w+)", sql)
    if table is None:
        return []
    name = table.group(1)
    where = sql.split("WHERE", 1)[1].split("EXISTS")[0].split("ORDER BY")[0] if "WHERE" in sql else ""
    wanted = set(re.findall(rf"\b{name}\.(\w+)", where))
    seek = next((line for line in plan if re.match(rf"\s*(SEARCH|SCAN) {name}\b", line)), "")
    m = re.search(r"\((.*)\)\s*$", seek)
    used = set(re.findall(r"(\w+)\s*(?:=|<|>|IN\b)", m.group(1))) if m else set()
    residual = sorted(wanted - used)
    return [f"tests {', '.join(residual)} row by row while walking the index"] if residual else []


def add_plans(target: Target, results: list[Result]) -> None:
    for r in results:
        statements = statements_of(r.first, target.dialect)
        if not statements:
            r.index = "-"
            continue
        if target.path is not None:
            explained = [(*explain_sqlite(target.path, st.literal), None) for st in statements]
        else:
            explained = asyncio.run(explain_pg(target.pg_dsn, statements))
        r.plans = []
        for st, (plan, _, generic) in zip(statements, explained, strict=True):
            r.plans.append(st.literal)
            r.plans.extend("    " + line for line in plan)
            if generic is not None:
                r.plans.append("  after 5 executions of the prepared statement (plan_cache_mode=auto), the plan is:")
                r.plans.extend("    " + line for line in generic)
        # The last statement is the list or the event read; the runs.get before it is a PK lookup.
        main_plan, r.db_ms, generic = explained[-1]
        r.index, r.flags = classify(target.dialect, main_plan)
        if target.path is not None:
            r.flags.extend(_sqlite_residual(statements[-1].literal, main_plan))
        if generic is not None:
            g_index, g_flags = classify(target.dialect, generic)
            r.flags.append(f"generic plan after 5 runs: {g_index}" + (f" ({'; '.join(g_flags)})" if g_flags else ""))


# ---------------------------------------------------------------------------------------------


def run_dialect(dialect: str, args: argparse.Namespace, tmp: Path) -> list[Result]:
    log(f"\n=== {dialect}: {args.runs:,} runs × ~{args.events_per_run} events ===")
    target = create_target(dialect, args)
    try:
        if not args.reuse:
            t0 = time.perf_counter()
            org_id = bootstrap(target, tmp)
            log(f"  migrated and bootstrapped in {time.perf_counter() - t0:.1f} s (admin org {org_id})")
            world = World(org_id, args.runs, args.events_per_run, args.seed, int(time.time() * 1_000_000))
            log(f"  seeding into {target.path or target.database} …")
            if dialect == "sqlite":
                seeded = seed_sqlite(target, world, args.gen_workers)
                log(f"  seeded in {seeded:.1f} s")
            else:
                seeded, vacuum = asyncio.run(_seed_pg(target, world, args.gen_workers))
                log(f"  seeded in {seeded:.1f} s (COPY), VACUUM ANALYZE {vacuum:.1f} s")
            t0 = time.perf_counter()
            added = asyncio.run(_rollup(target.url))
            log(f"  usage_daily rolled up from {added:,} ended runs in {time.perf_counter() - t0:.1f} s")
            log(f"  database size: {db_size(target)}")
        else:
            org_id = _admin_org(target)
            log(f"  reusing {target.path or target.database} ({db_size(target)})")
        for sql in args.setup_sql:
            t0 = time.perf_counter()
            _execute(target, sql)
            log(f"  setup: {sql}  ({time.perf_counter() - t0:.1f} s)")
        sample = load_sample(target, org_id)
        sample.small_org, sample.small_users = small_org(target)
        log("  counts: " + ", ".join(f"{k} {v:,}" for k, v in sample.counts.items()))
        if sample.counts["sum(last_seq)"] != sample.counts["events"]:
            log("  WARNING: sum(last_seq) != count(events)")
        check_logs(target, [r for r, _, _ in sample.runs[:500]])
        queries = [q for q in build_queries(sample) if re.search(args.only, q.name)]
        srv = ApiServer(target.url).start(tmp)
        results = []
        try:
            client = Client(srv.port)
            rng = random.Random(args.seed + 7)
            log(
                f"  server on :{srv.port}; {args.warmup} warm-up + {args.requests} timed requests per query; "
                f"load average {os.getloadavg()[0]:.1f} (this machine has {os.cpu_count()} cores)"
            )
            for q in queries:
                r = measure(client, q, rng, args.requests, args.warmup)
                log(f"    {q.name:<42} p50 {r.p50:7.1f} ms  p95 {r.p95:7.1f} ms  ({r.rows:.1f} items/answer)")
                results.append(r)
            client.close()
            log(f"  load average after measuring: {os.getloadavg()[0]:.1f}")
        finally:
            srv.stop()
        add_plans(target, results)
        print_plans(dialect, results)
        print_table(dialect, results)
        return results
    finally:
        if args.keep:
            log(f"  kept {target.path or target.database}")
        else:
            drop_target(target)
            log(f"  dropped {target.path or target.database}")


def check_logs(target: Target, run_ids: list[str]) -> None:
    """Each sampled run: events 1..last_seq, no gap."""
    bad = 0
    sql = "SELECT r.last_seq, count(e.seq), min(e.seq), max(e.seq) FROM runs r JOIN events e ON e.run_id = r.id " \
          "WHERE r.id = {p} GROUP BY r.last_seq"  # fmt: skip
    if target.path is not None:
        conn = sqlite3.connect(f"file:{target.path}?mode=ro", uri=True)
        for run_id in run_ids:
            last, n, lo, hi = conn.execute(sql.format(p="?"), (run_id,)).fetchone()
            bad += not (n == last and lo == 1 and hi == last)
        conn.close()
    else:

        async def check() -> int:
            conn = await asyncpg.connect(target.pg_dsn)
            try:
                count = 0
                for run_id in run_ids:
                    last, n, lo, hi = await conn.fetchrow(sql.format(p="$1"), run_id)
                    count += not (n == last and lo == 1 and hi == last)
                return count
            finally:
                await conn.close()

        bad = asyncio.run(check())
    log(f"  event logs of {len(run_ids)} sampled runs: " + ("all gapless 1..last_seq" if not bad else f"{bad} BAD"))


def _admin_org(target: Target) -> str:
    key_hash = hash_key(ADMIN_KEY)
    if target.path is not None:
        with sqlite3.connect(target.path) as conn:
            return conn.execute("SELECT org_id FROM api_keys WHERE key_hash = ?", (key_hash,)).fetchone()[0]

    async def org() -> str:
        conn = await asyncpg.connect(target.pg_dsn)
        try:
            return await conn.fetchval("SELECT org_id FROM api_keys WHERE key_hash = $1", key_hash)
        finally:
            await conn.close()

    return asyncio.run(org())


def _execute(target: Target, sql: str) -> None:
    if target.path is not None:
        conn = sqlite3.connect(target.path, isolation_level=None)
        conn.execute(sql)
        conn.close()
        return

    async def run() -> None:
        conn = await asyncpg.connect(target.pg_dsn)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run())


def print_plans(dialect: str, results: list[Result]) -> None:
    log(f"\n--- {dialect}: the SQL each query runs (first timed request's values) and its plan ---")
    for r in results:
        log(f"\n[{r.query.name}]  index: {r.index or '?'}" + (f"   FLAGS: {'; '.join(r.flags)}" if r.flags else ""))
        for line in r.plans:
            log("  " + line)


def print_table(dialect: str, results: list[Result]) -> None:
    log(f"\n=== {dialect}: results (target p95 <= {TARGET_MS:.0f} ms) ===")
    header = ("query", "p50 ms", "p95 ms", "db ms", "items", "index", "flags", "target", "")
    rows = []
    for r in results:
        ok = r.p95 <= TARGET_MS
        rows.append(
            (r.query.name, f"{r.p50:.1f}", f"{r.p95:.1f}", f"{r.db_ms:.1f}" if r.db_ms is not None else "",
             f"{r.rows:.0f}", r.index, "; ".join(r.flags) or "-", f"p95 <= {TARGET_MS:.0f} ms",
             "met" if ok else "MISSED")
        )  # fmt: skip
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=True)]
    for row in (header, tuple("-" * w for w in widths), *rows):
        log("| " + " | ".join(str(x).ljust(w) for x, w in zip(row, widths, strict=True)) + " |")
    log("(db ms: the query alone, on SQLite timed with sqlite3 on the literal SQL, on PostgreSQL EXPLAIN ANALYZE's "
        "execution time; items: entries per answer)")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1_000_000)
    parser.add_argument("--events-per-run", type=int, default=20)
    parser.add_argument("--dialect", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--requests", type=int, default=200, help="timed requests per query (default 200)")
    parser.add_argument("--warmup", type=int, default=20, help="untimed requests first (default 20)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--gen-workers", type=int, default=1, help="processes building rows (0: in the writer)")
    parser.add_argument("--sqlite-path", default=str(Path(tempfile.gettempdir()) / "runyard_scale" / "runyard.db"))
    parser.add_argument("--pg-db", default="runyard_scale")
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    parser.add_argument("--reuse", action="store_true", help="measure a kept database again (no seeding)")
    parser.add_argument("--setup-sql", action="append", default=[], help="run before measuring (repeatable)")
    parser.add_argument("--only", default="", help="regex: only the queries whose name matches")
    args = parser.parse_args()
    dialects = ("sqlite", "postgresql") if args.dialect == "both" else (args.dialect,)
    free = shutil.disk_usage(Path(args.sqlite_path).parent if Path(args.sqlite_path).parent.exists() else "/tmp").free
    log(f"free disk: {free / 2**30:.0f} GiB")
    tmp = Path(tempfile.mkdtemp(prefix="runyard-scale-"))
    # A SIGTERM unwinds like an error: the server stops and the database is dropped (unless --keep).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        for dialect in dialects:
            run_dialect(dialect, args, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
