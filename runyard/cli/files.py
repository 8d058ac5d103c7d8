"""`runyard files upload | download` and `runyard runs files`: the files runs are given and write.

`runyard run --file PATH` uploads through `upload_all` here, then gives the run the ids.
"""

from __future__ import annotations

from itertools import islice
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from runyard import File, Runyard

from .options import LIST_PAGE_SIZE, ApiKey, AsJson, BaseUrl, connect
from .output import err, out, print_json, reporting, when

__all__ = ["add_runs_commands", "files_app", "human_size", "upload_all"]

files_app = typer.Typer(help="Upload files for runs, and download the files runs wrote.", no_args_is_help=True)


def human_size(size: int) -> str:
    """`512 B`, `1.5 KB`, `12.0 MB`: a byte count for a table."""
    if size < 1024:
        return f"{size} B"
    value = size / 1024
    for unit in ("KB", "MB"):
        if value < 1024:
            return f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GB"


def upload_all(client: Runyard, paths: list[Path]) -> list[File]:
    """Upload each local file (named as it is, at the top of the workspace) and return the uploads."""
    return [client.files.upload(path) for path in paths]


@files_app.command("upload")
def files_upload(
    path: Annotated[Path, typer.Argument(help="The local file.", exists=True, dir_okay=False, readable=True)],
    workspace_path: Annotated[
        str | None, typer.Option("--path", help="Where a run finds it in its workspace (default: its name).")
    ] = None,
    as_json: AsJson = False,
    base_url: BaseUrl = None,
    api_key: ApiKey = None,
) -> None:
    """Upload a file and print its id: give it to a run with `runyard run … --file` or the SDK's `files=[id]`."""
    client = connect(base_url, api_key)
    with reporting(client):
        uploaded = (
            client.files.upload(path) if workspace_path is None else client.files.upload(path, path=workspace_path)
        )
    if as_json:
        print_json(uploaded.model_dump(mode="json"))
    else:
        out.print(uploaded.id)


@files_app.command("download")
def files_download(
    file_id: Annotated[str, typer.Argument(help="The file's id.")],
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Write here: a file path, or a directory (default: the current one)."),
    ] = None,
    base_url: BaseUrl = None,
    api_key: ApiKey = None,
) -> None:
    """Download a file (an upload, or a file a run wrote) and print where it went."""
    client = connect(base_url, api_key)
    with reporting(client, f"file {file_id}"):
        written = client.files.download(file_id, output if output is not None else Path.cwd())
    out.print(str(written))


def runs_files(
    run_id: Annotated[str, typer.Argument(help="The run's id.")],
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="Show at most this many files.")] = 100,
    as_json: AsJson = False,
    base_url: BaseUrl = None,
    api_key: ApiKey = None,
) -> None:
    """List the files a run was given or wrote, newest first; download one with `runyard files download ID`."""
    client = connect(base_url, api_key)
    with reporting(client, f"run {run_id}"):
        found = list(islice(client.runs.files.list(run_id, limit=min(limit, LIST_PAGE_SIZE)), limit))
    if as_json:
        print_json([f.model_dump(mode="json") for f in found])
        return
    if not found:
        err.print(Text("no files", style="dim"))
        return
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("path", "size", "type", "id", "updated"):
        table.add_column(column, no_wrap=column != "path", justify="right" if column == "size" else "left")
    for f in found:
        table.add_row(f.path, human_size(f.size), f.content_type, f.id, when(f.updated_at))
    out.print(table)


def add_runs_commands(runs_app: typer.Typer) -> None:
    """Add `files` to the `runs` group: it lives here, with the other file commands."""
    runs_app.command("files")(runs_files)
