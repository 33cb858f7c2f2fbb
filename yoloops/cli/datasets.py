"""`yoloops dataset validate|push`: check a dataset here, upload it there (which starts a run)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from yoloops.cli.common import FINISHED_OK, emit_json, fail, handle_errors, state_of
from yoloops.datasets import push, validate_dir, wait_and_report
from yoloops.views import out, print_run

app = typer.Typer()
dataset_app = typer.Typer(no_args_is_help=True, help="Validate and push dataset versions.")
app.add_typer(dataset_app, name="dataset")


@dataset_app.command("validate")
@handle_errors
def dataset_validate(
    path: Annotated[Path, typer.Argument(help="Dataset directory (YOLO layout, data.yaml).")],
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Validate a local dataset with the same validator as the workflow; exit 1 on errors."""
    report = validate_dir(path)
    if as_json:
        emit_json(report.model_dump(mode="json"))
    else:
        out.print(report.summary_text(), style="green" if report.valid else "red", markup=False)
    if not report.valid:
        raise typer.Exit(1)


@dataset_app.command("push")
@handle_errors
def dataset_push(
    ctx: typer.Context,
    path: Annotated[Path, typer.Argument(help="Dataset directory.")],
    name: str = typer.Option(..., "--name", "-n", help="Dataset name."),
    version: str | None = typer.Option(None, "--version", "-v", help="Version (default: UTC timestamp)."),
    force: bool = typer.Option(False, "--force", help="Push even if pre-flight validation finds errors."),
    wait: bool = typer.Option(False, "--wait", help="Wait for the run to finish and show its outcome."),
    timeout: float = typer.Option(3600, "--timeout", help="Seconds --wait waits at most."),
    workers: int = typer.Option(8, "--workers", min=1, max=64, help="Parallel uploads."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
    weights: str | None = typer.Option(
        None, "--weights", help="Base weights of this version's run: champion, or a .pt pushed with "
        "`yoloops weights push` (overrides the stack's BaseWeights; kept in manifest.json)."),
) -> None:
    """Upload a dataset version (manifest.json last, which starts a run) and print the run id."""
    st = state_of(ctx)
    if not path.is_dir():
        raise fail(f"dataset directory {path} does not exist (or is not a directory)", 2)
    stack = st.stack
    result = push(stack, path, name, version, force=force, workers=workers, quiet=as_json, weights=weights)
    summary: dict[str, Any] = {"dataset": result.dataset, "version": result.version, "run_id": result.run_id,
                               "files": result.files, "bytes": result.bytes,
                               "manifest": f"s3://{stack.bucket}/{result.manifest_key}"}
    if not as_json:
        out.print(f"pushed [bold]{result.dataset}/{result.version}[/]: {result.files} files, "
                  f"{result.bytes / 1e6:.1f} MB, manifest s3://{stack.bucket}/{result.manifest_key}")
        out.print(f"run id: [bold cyan]{result.run_id}[/]")
    if not wait:
        if as_json:
            emit_json(summary)
        return
    waited = wait_and_report(stack, result.run_id, timeout, quiet=as_json)
    summary.update(execution_status=waited.execution_status, run=waited.run)
    if as_json:
        emit_json(summary)
    else:
        if waited.run:
            print_run(stack, waited.run, [])
        else:
            out.print(f"execution status: {waited.execution_status}")
    status = (waited.run or {}).get("status")
    if status not in FINISHED_OK:
        raise typer.Exit(1)
