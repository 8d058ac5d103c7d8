"""A quiet SSE stream sends `: ping` comments (every RUNYARD_SSE_HEARTBEAT seconds, 15 by default)."""

from __future__ import annotations

from pathlib import Path

import httpx

from support.servers import ADMIN_KEY, ServerInThread
from runyard.config import Settings


def test_quiet_stream_sends_heartbeats_then_ends(tmp_path: Path) -> None:
    settings = Settings(database_url=f"sqlite+aiosqlite:///{tmp_path}/hb.db", api_key=ADMIN_KEY, sse_heartbeat=0.2)
    srv = ServerInThread(settings).start()
    try:
        body = {"name": "hb", "instructions": "x", "message": "wait", "metadata": {"script": [{"delay": 1.2, "text": "ok"}]}}
        run = httpx.post(f"{srv.base_url}/v1/runs", json=body, headers=srv.headers()).json()
        pings, events = 0, []
        with httpx.stream("GET", f"{srv.base_url}/v1/runs/{run['id']}/events",
                          headers={**srv.headers(), "Accept": "text/event-stream"}, timeout=10) as r:
            for line in r.iter_lines():
                if line == ": ping":
                    pings += 1
                elif line.startswith("event: "):
                    events.append(line[7:])
        assert pings >= 2  # about 1 s of model delay at 0.2 s per heartbeat
        assert events[-1] == "run.completed"
    finally:
        srv.stop()
