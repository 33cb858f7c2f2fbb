"""`yoloops sweep DATASET[@VERSION] --param ... --max-jobs N --parallel P [--strategy S]`: a budget-capped
SageMaker hyperparameter tuning job whose best model goes through the same verdict as any run."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape

from yoloops.cli.common import emit_json, handle_errors, state_of
from yoloops.views import out

app = typer.Typer()


@app.command("sweep")
@handle_errors
def sweep_cmd(
    ctx: typer.Context,
    dataset: str = typer.Argument(..., metavar="DATASET[@VERSION]", help="Default version: the latest complete one."),
    param: Annotated[list[str] | None, typer.Option("--param", "-p", help="NAME=LO..HI[:log|:linear] or NAME=A,B,C; "
                                                    "repeat (at least one).")] = None,
    max_jobs: int = typer.Option(..., "--max-jobs", min=1, help="Training jobs in all (the budget reserves them all)."),
    parallel: int = typer.Option(1, "--parallel", min=1, help="Training jobs at a time."),
    strategy: str = typer.Option("bayesian", "--strategy", help="bayesian, random or hyperband."),
    assignments: Annotated[list[str] | None, typer.Option("--set", help="Fixed hyperparameter k=v for every job.")] = None,
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Search hyperparameters with one tuning job; the best job is judged and maybe promoted."""
    from yoloops.client import CliError
    from yoloops.sweeps import start_sweep

    if not param:
        raise CliError("give at least one --param NAME=LO..HI[:log] or NAME=A,B,C to sweep over")

    result = start_sweep(state_of(ctx).stack, dataset, param, max_jobs=max_jobs, parallel=parallel,
                         strategy=strategy, assignments=assignments or [])
    if as_json:
        emit_json(result)
        return
    out.print(f"sweep [bold]{escape(result['run_id'])}[/] started: {max_jobs} jobs, {parallel} at a time "
              f"({escape(strategy)}) on {escape(result['dataset'])}@{escape(result['version'])}; "
              f"`yoloops run show {escape(result['run_id'])}` follows it")
