"""`yoloops train DATASET[@VERSION] [--set k=v ...]` and `yoloops run retry RUN [--set k=v ...]`: run again.

The logic is yoloops.rerun's; these print what started and, with --wait, how it ended.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.markup import escape

from yoloops import rerun
from yoloops.cli.common import FINISHED_OK, emit_json, handle_errors, state_of
from yoloops.client import Stack
from yoloops.datasets import wait_and_report
from yoloops.views import out, print_run

app = typer.Typer()
SET_HELP = ("Hyperparameter override KEY=VALUE (repeatable), from the same allow-list as a release's yaml block "
            "(epochs, imgsz, batch, lr0, model, optimizer, ...).")


def _report(stack: Stack, started: dict[str, Any], wait: bool, timeout: float, as_json: bool, what: str) -> None:
    if not as_json:
        sets = " ".join(f"{k}={v}" for k, v in sorted(started["overrides"].items())) or "no overrides"
        out.print(f"{what} of [bold]{escape(started['of_run'])}[/] ({escape(started['dataset'])}@"
                  f"{escape(started['version'])}, {escape(sets)}): run id [bold cyan]{started['run_id']}[/]")
    if not wait:
        if as_json:
            emit_json(started)
        return
    waited = wait_and_report(stack, started["run_id"], timeout, quiet=as_json)
    if as_json:
        emit_json({**started, "execution_status": waited.execution_status, "run": waited.run})
    elif waited.run:
        print_run(stack, waited.run, [])
    else:
        out.print(f"execution status: {waited.execution_status}")
    if (waited.run or {}).get("status") not in FINISHED_OK:
        raise typer.Exit(1)


@app.command("train")
@handle_errors
def train_cmd(
    ctx: typer.Context,
    dataset: Annotated[str, typer.Argument(metavar="DATASET[@VERSION]",
                                           help="A pushed, validated dataset version (default: its newest).")],
    sets: Annotated[list[str] | None, typer.Option("--set", help=SET_HELP)] = None,
    weights: str | None = typer.Option(None, "--weights", help="Start from: champion, or a .pt pushed with "
                                       "`yoloops weights push` (default: as the stack's BaseWeights)."),
    instance_type: str | None = typer.Option(None, "--instance-type", help="This run's SageMaker instance type "
                                             "(e.g. ml.g5.2xlarge; default: the stack's InstanceType), priced by the "
                                             "budget gate like any run."),
    wait: bool = typer.Option(False, "--wait", help="Wait for the run to finish and show its outcome."),
    timeout: float = typer.Option(3600, "--timeout", help="Seconds --wait waits at most."),
    as_json: bool = typer.Option(False, "--json", help="Print the run started (and its input) as JSON."),
) -> None:
    """Train a dataset version again with other settings: a new run <run id>-t<n>, same workflow."""
    stack = state_of(ctx).stack
    started = rerun.retrain(stack, dataset, sets or [], weights=weights, instance_type=instance_type)
    _report(stack, started, wait, timeout, as_json, "retrain")


def retry_cmd(
    ctx: typer.Context,
    run_id: str = typer.Argument(..., metavar="RUN"),
    sets: Annotated[list[str] | None, typer.Option("--set", help=SET_HELP)] = None,
    instance_type: str | None = typer.Option(None, "--instance-type", help="This run's SageMaker instance type "
                                             "(e.g. ml.g5.2xlarge; default: the run's own), priced by the "
                                             "budget gate like any run."),
    wait: bool = typer.Option(False, "--wait", help="Wait for the run to finish and show its outcome."),
    timeout: float = typer.Option(3600, "--timeout", help="Seconds --wait waits at most."),
    as_json: bool = typer.Option(False, "--json", help="Print the run started (and its input) as JSON."),
) -> None:
    """Run a finished run again with its own inputs (and overrides): a new run <run id>-y<n>."""
    stack = state_of(ctx).stack
    started = rerun.retry(stack, run_id, sets or [], instance_type=instance_type)
    _report(stack, started, wait, timeout, as_json, "retry")
