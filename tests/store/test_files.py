"""Workspace files in the store (`runyard.store.files`), on SQLite and PostgreSQL.

Path rules (one normal spelling, nothing that escapes the workspace or cannot be stored), the
limits (per file, per thread in bytes counting a replaced file's old size, per thread in
files), run_files, attach (uploads into a new run's workspace, with their events; unknown and
other orgs' ids refused), the workspace listing for the model, and deleting a thread's files.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import func, select
from support.postgres import create_database, drop_database, url_of

from runyard.bus import LocalBus
from runyard.store import agents, blobs, events, files, keys, runs, threads
from runyard.store.db import Store, create_engine
from runyard.store.errors import InvalidInput, NotFound, PayloadTooLarge
from runyard.store.migrate import upgrade
from runyard.store.schema import file_blobs, run_files

DB = blobs.for_url("db")
LIMITS = files.FileLimits(max_bytes=100, max_thread_bytes=250, max_thread_files=3)

BAD_PATHS = [
    ("", "non-empty"),
    ("   ", "non-empty"),
    ("/etc/passwd", "absolute"),
    ("//x", "absolute"),
    ("../up.txt", "'..'"),
    ("a/../../b", "'..'"),
    ("a/..", "'..'"),
    ("a\x00b", "control character"),
    ("line\nbreak.txt", "control character"),
    ("tab\there", "control character"),
    ("del\x7f", "control character"),
    ("c1\x85", "control character"),
    ("dir\\file.txt", "backslash"),
    ("./", "names no file"),
    (".", "names no file"),
    ("a" * 256, "component longer than 255"),
    ("é" * 128, "component longer than 255"),  # 256 bytes in UTF-8, 128 characters
    ("/".join(["d" * 50] * 6), "longer than 255 bytes"),
    ("bad\udcffsurrogate", "lone surrogate"),
]


@pytest.mark.parametrize(("path", "why"), BAD_PATHS, ids=[repr(p)[:30] for p, _ in BAD_PATHS])
def test_bad_paths_are_refused_with_a_reason(path: str, why: str) -> None:
    with pytest.raises(InvalidInput) as info:
        files.normalise_path(path)
    assert why in info.value.message
    assert info.value.field == "path"


@pytest.mark.parametrize(
    ("path", "normal"),
    [
        ("report.md", "report.md"),
        ("./report.md", "report.md"),
        ("a//b///c.txt", "a/b/c.txt"),
        ("a/./b/./c", "a/b/c"),
        ("dir/", "dir"),
        ("..hidden/x..y", "..hidden/x..y"),  # dots inside names are just names
        ("ünïcode/文件.txt", "ünïcode/文件.txt"),
        ("a" * 255, "a" * 255),
    ],
)
def test_paths_are_normalised(path: str, normal: str) -> None:
    assert files.normalise_path(path) == normal


def test_content_type_falls_back_to_text_plain() -> None:
    assert files.content_type_of("data.json") == "application/json"
    assert files.content_type_of("image.png") == "image/png"
    assert files.content_type_of("no-extension") == "text/plain"


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
async def store(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Store]:
    database = ""
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('files') / 'files.db'}"
    else:
        database = await create_database()
        url = url_of(database)
    store = Store(create_engine(url), LocalBus())
    await upgrade(store.engine)
    yield store
    await store.close()
    if database:
        await drop_database(database)


async def new_run(store: Store, org: str | None = None, thread_id: str | None = None) -> tuple[str, str, str]:
    """(org, thread, run): a pending run in a fresh org (or in `org`, on `thread_id`)."""
    async with store.tx() as tx:
        org = org or await keys.ensure_org(tx.conn, f"org-{secrets.token_hex(4)}")
        agent = await agents.create(tx.conn, org, {"name": f"a-{secrets.token_hex(3)}", "instructions": "x"})
        run = await runs.create(
            tx,
            org,
            agent=agent,
            message="hi",
            thread_id=thread_id,
            tools=None,
            model=None,
            user_id=None,
            metadata={},
            multitask="enqueue",
        )
    return org, run["thread_id"], run["id"]


async def write(store: Store, org: str, thread: str, run: str, path: str, content: bytes, **kw):
    async with store.tx() as tx:
        return await files.write(tx, DB, org, thread, path, content, run, limits=kw.pop("limits", LIMITS), **kw)


async def test_write_creates_then_updates_one_file_per_path(store: Store) -> None:
    org, thread, run = await new_run(store)
    created, change, _ = await write(store, org, thread, run, "./notes//a.txt", b"first")
    assert change == "created"
    assert created["path"] == "notes/a.txt" and created["size"] == 5 and created["thread_id"] == thread
    assert created["sha256"] == files.sha256_of(b"first") and created["run_id"] == run
    updated, change, released = await write(store, org, thread, run, "notes/a.txt", b"second!")
    assert change == "updated" and updated["id"] == created["id"] and updated["size"] == 7
    assert released == [blobs.key_for(org, thread, files.sha256_of(b"first"))]
    async with store.read() as conn:
        page, _, _ = await files.list_for_thread(conn, org, thread, limit=10)
        assert [f["id"] for f in page] == [created["id"]]
        # The old content's blob went with its last reference, in the same transaction.
        keys_left = [
            r.key for r in await conn.execute(select(file_blobs.c.key).where(file_blobs.c.key.like(f"{org}/%")))
        ]
    assert keys_left == [blobs.key_for(org, thread, files.sha256_of(b"second!"))]
    assert await DB.read(store, keys_left[0]) == b"second!"
    assert await DB.read(store, keys_left[0], 2, 5) == b"con"


async def test_limits_per_file_per_thread_bytes_and_files(store: Store) -> None:
    org, thread, run = await new_run(store)
    with pytest.raises(PayloadTooLarge, match="at most 100"):
        await write(store, org, thread, run, "big.bin", b"x" * 101)
    await write(store, org, thread, run, "a", b"x" * 100)
    await write(store, org, thread, run, "b", b"x" * 100)
    with pytest.raises(PayloadTooLarge, match="at most 250"):
        await write(store, org, thread, run, "c", b"x" * 51)
    # Replacing counts the new size instead of the old one: 100 + 100 → 100 + 150 fits.
    await write(store, org, thread, run, "b", b"y" * 100)
    await write(store, org, thread, run, "c", b"z" * 50)
    with pytest.raises(PayloadTooLarge, match="3 files"):
        await write(store, org, thread, run, "d", b"")
    async with store.read() as conn:
        page, _, _ = await files.list_for_thread(conn, org, thread, limit=10)
    assert sorted(f["path"] for f in page) == ["a", "b", "c"]
    assert sum(f["size"] for f in page) == 250


async def test_run_files_lists_what_each_run_wrote(store: Store) -> None:
    org, thread, first = await new_run(store)
    _, _, second = await new_run(store, org, thread)
    a, _, _ = await write(store, org, thread, first, "a.txt", b"a")
    b, _, _ = await write(store, org, thread, first, "b.txt", b"b")
    await write(store, org, thread, second, "b.txt", b"bb")
    async with store.read() as conn:
        mine, _, _ = await files.list_for_run(conn, org, first, limit=10)
        theirs, _, _ = await files.list_for_run(conn, org, second, limit=10)
        one, more, cursor = await files.list_for_run(conn, org, first, limit=1)
        rest, _, _ = await files.list_for_run(conn, org, first, limit=1, before=cursor)
        other_org = await keys.ensure_org(conn, f"org-{secrets.token_hex(4)}")
        nothing, _, _ = await files.list_for_run(conn, other_org, first, limit=10)
    assert [f["id"] for f in mine] == [b["id"], a["id"]]  # newest first
    assert [f["id"] for f in theirs] == [b["id"]]
    assert theirs[0]["run_id"] == second  # the last writer
    assert more and [f["id"] for f in one + rest] == [b["id"], a["id"]]
    assert nothing == []


async def test_attach_puts_uploads_into_the_workspace_with_events(store: Store) -> None:
    async with store.tx() as tx:
        org = await keys.ensure_org(tx.conn, f"org-{secrets.token_hex(4)}")
        up = await files.upload(tx, DB, org, path="data.csv", content=b"a,b\n1,2\n", limits=LIMITS)
        agent = await agents.create(tx.conn, org, {"name": "a", "instructions": "x"})
        run = await runs.create(
            tx,
            org,
            agent=agent,
            message="hi",
            thread_id=None,
            tools=None,
            model=None,
            user_id=None,
            metadata={},
            files=[up["id"]],
            file_limits=LIMITS,
        )
    assert up["thread_id"] is None and up["run_id"] is None
    async with store.read() as conn:
        log = await events.read(conn, org, run["id"])
        placed = await files.get_by_path(conn, org, run["thread_id"], "data.csv")
        block = await files.workspace_block(conn, org, run["thread_id"])
        upload_still = await files.get(conn, org, up["id"])
        _, key = await files.locate(conn, org, placed["id"])
    assert [e["type"] for e in log] == ["run.queued", "file.created"]
    assert log[1]["data"] == files.event_data(placed)
    assert placed["run_id"] == run["id"] and placed["sha256"] == up["sha256"] and placed["id"] != up["id"]
    assert upload_still["thread_id"] is None
    assert await DB.read(store, key) == b"a,b\n1,2\n"
    assert block is not None and "- data.csv (8 bytes)" in block


async def test_attach_refuses_unknown_ids_and_other_orgs_uploads(store: Store) -> None:
    async with store.tx() as tx:
        other = await keys.ensure_org(tx.conn, f"org-{secrets.token_hex(4)}")
        theirs = await files.upload(tx, DB, other, path="secret.txt", content=b"s", limits=LIMITS)
    org, thread, _ = await new_run(store)
    for file_id in ("file_nope", theirs["id"]):
        with pytest.raises(NotFound) as info:
            async with store.tx() as tx:
                agent = await agents.create(tx.conn, org, {"name": f"a-{secrets.token_hex(3)}", "instructions": "x"})
                await runs.create(
                    tx,
                    org,
                    agent=agent,
                    message="hi",
                    thread_id=thread,
                    tools=None,
                    model=None,
                    user_id=None,
                    metadata={},
                    multitask="enqueue",
                    files=[file_id],
                    file_limits=LIMITS,
                )
        assert info.value.field == "files"
    async with store.read() as conn:
        page, _, _ = await files.list_for_thread(conn, org, thread, limit=10)
        runs_page, _, _ = await runs.list_(conn, org, limit=10, thread_id=thread)
    assert page == [] and len(runs_page) == 1  # nothing was written


async def test_delete_by_path_and_thread_delete_remove_rows_and_blobs(store: Store) -> None:
    org, thread, run = await new_run(store)
    same = b"shared content"
    await write(store, org, thread, run, "one.txt", same)
    await write(store, org, thread, run, "two.txt", same)  # the same blob under two paths
    await write(store, org, thread, run, "three.txt", b"other")
    key = blobs.key_for(org, thread, files.sha256_of(same))
    async with store.tx() as tx:
        deleted, gone = await files.delete_by_path(tx.conn, org, thread, "one.txt")
    assert deleted["path"] == "one.txt" and gone == []  # two.txt still refers to the blob
    assert await DB.read(store, key) == same
    with pytest.raises(NotFound) as info:
        async with store.tx() as tx:
            await files.delete_by_path(tx.conn, org, thread, "one.txt")
    assert info.value.field == "path"
    # A thread with a pending run cannot be deleted; cancel it first.
    async with store.tx() as tx:
        await runs.request_cancel(tx, org, run)
    async with store.tx() as tx:
        released = await threads.delete_(tx.conn, org, thread)
    assert sorted(released) == sorted([key, blobs.key_for(org, thread, files.sha256_of(b"other"))])
    async with store.read() as conn:
        left = (await conn.execute(select(func.count()).where(file_blobs.c.key.like(f"{org}/{thread}/%")))).scalar()
        rf = (await conn.execute(select(func.count()).where(run_files.c.run_id == run))).scalar()
    assert left == 0 and rf == 0


async def test_workspace_block_is_bounded(store: Store) -> None:
    org, thread, run = await new_run(store)
    many = files.FileLimits(max_bytes=10, max_thread_bytes=10_000, max_thread_files=1000)
    async with store.read() as conn:
        assert await files.workspace_block(conn, org, thread) is None
    async with store.tx() as tx:
        for i in range(files.WORKSPACE_LINES + 5):
            await files.write(tx, DB, org, thread, f"f{i:03}.txt", b"x", run, limits=many)
    async with store.read() as conn:
        block = await files.workspace_block(conn, org, thread)
    assert block is not None
    lines = block.splitlines()
    assert len(lines) == files.WORKSPACE_LINES + 2  # the heading, 100 files, "and 5 more"
    assert lines[1] == "- f000.txt (1 bytes)" and lines[-1].endswith("and 5 more")
