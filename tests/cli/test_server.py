"""`runyard serve`'s banner advertises only what the app serves."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from runyard.cli.server import banner
from runyard.config import Settings
from runyard.server.app import create_app

URL = "http://127.0.0.1:8321"
PACKAGE = Path(__file__).resolve().parents[2] / "runyard"


def test_the_console_is_advertised_only_when_it_is_mounted(tmp_path: Path) -> None:
    assert banner(URL, FastAPI()) == f"Runyard is running at {URL}  (API: /v1, docs: /docs)"
    (tmp_path / "index.html").write_text("<!doctype html>")
    with_console = FastAPI(docs_url=None)
    with_console.mount("/console", StaticFiles(directory=tmp_path, html=True), name="console")
    assert banner(URL, with_console) == f"Runyard is running at {URL}  (console: /console/, API: /v1)"


def test_the_real_app_advertises_the_console_only_if_it_is_built(tmp_path: Path) -> None:
    app = create_app(Settings(database_url=f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}"), run_worker=False)
    built = (PACKAGE / "console" / "index.html").exists()
    assert ("console: /console/" in banner(URL, app)) is built
