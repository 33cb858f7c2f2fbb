"""What `yoloops dataset push` does, as functions the demo calls too: pre-flight validation, upload
with a progress bar (manifest.json last), and waiting for the run the upload starts."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from yoloops.client import BadInput, CliError, PushResult, Stack, WaitResult, default_version
from yoloops.views import err


def validate_dir(path: Path) -> Any:
    from yoloops_core.dataset import validate_local_dataset

    if not path.is_dir():
        raise BadInput(f"dataset directory {path} does not exist (or is not a directory)")
    return validate_local_dataset(path)


def push(
    stack: Stack,
    path: Path,
    name: str,
    version: str | None = None,
    force: bool = False,
    workers: int = 8,
    quiet: bool = False,
    weights: str | None = None,
) -> PushResult:
    """What `yoloops dataset push` does (the demo calls this too): validate, upload, manifest last."""
    report = validate_dir(path)
    if not report.valid:
        if not force:
            err.print(report.summary_text(), markup=False)
            raise CliError(f"refusing to push {path}: the dataset has {report.error_count} errors "
                           "(fix them, or --force to push anyway and let the workflow reject it)")
        err.print(f"[yellow]warning:[/] pushing an invalid dataset (--force): {report.error_count} errors")
    version = version or default_version()
    if weights:
        from yoloops.bundle import check_weights

        check_weights(stack, weights, name)  # a wrong name fails now, not in the workflow
    if quiet:
        return stack.push_dataset(path, name, version, workers=workers, weights=weights)
    columns = (TextColumn("[bold]uploading"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
               TextColumn("{task.fields[files]} files"), TimeRemainingColumn())
    with Progress(*columns, console=err, transient=False) as progress:
        task = progress.add_task("upload", total=report.bytes or None, files=0)
        done = {"n": 0}

        def on_file(_key: str, size: int) -> None:
            done["n"] += 1
            progress.update(task, advance=size, files=done["n"])

        result = stack.push_dataset(path, name, version, workers=workers, on_file=on_file, weights=weights)
    return result


def wait_and_report(stack: Stack, run_id: str, timeout: float, quiet: bool = False) -> WaitResult:
    last = {"state": ""}

    def on_poll(status: str, _desc: Any) -> None:
        if quiet:
            return
        states = stack.execution_states(run_id) if status != "NOT_STARTED" else []
        now = states[-1]["name"] if states else ("waiting for the S3 trigger" if status == "NOT_STARTED" else status)
        if now != last["state"]:
            last["state"] = now
            err.print(f"  [dim]{time.strftime('%H:%M:%S')}[/] {now}")

    return stack.wait_for_run(run_id, timeout=timeout, on_poll=on_poll)
