"""`yoloops runs | run show RUN | logs RUN`: what runs did and are doing."""

from __future__ import annotations

import time

import typer
from rich.live import Live

from yoloops.cli import train
from yoloops.cli.common import emit_json, fail, handle_errors, state_of
from yoloops.views import err, out, print_run, runs_table

app = typer.Typer()
run_app = typer.Typer(no_args_is_help=True, help="Inspect one run, or run it again.")
app.add_typer(run_app, name="run")
run_app.command("retry")(handle_errors(train.retry_cmd))


@app.command("runs")
@handle_errors
def runs_cmd(
    ctx: typer.Context,
    dataset: str | None = typer.Option(None, "--dataset", "-d", help="Only runs of this dataset."),
    months: int = typer.Option(2, "--months", min=1, help="Calendar months to look back."),
    limit: int = typer.Option(50, "--limit", min=1),
    watch: bool = typer.Option(False, "--watch", "-w", help="Refresh until Ctrl-C."),
    interval: float = typer.Option(3.0, "--interval", help="Seconds between refreshes with --watch."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """List recent runs, newest first."""
    stack = state_of(ctx).stack
    runs = stack.list_runs(dataset=dataset, months=months, limit=limit)
    if as_json:
        emit_json(runs)
        return
    if not watch:
        out.print(runs_table(runs))
        return
    try:
        with Live(runs_table(runs), console=out, refresh_per_second=1) as live:
            while True:
                time.sleep(interval)
                live.update(runs_table(stack.list_runs(dataset=dataset, months=months, limit=limit)))
    except KeyboardInterrupt:
        pass


@run_app.command("show")
@handle_errors
def run_show(
    ctx: typer.Context,
    run_id: str = typer.Argument(..., metavar="RUN"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Status, states, attempts, interruptions, metrics, cost and links of one run."""
    stack = state_of(ctx).stack
    run = stack.get_run(run_id)
    states = stack.execution_states(run_id)
    desc = stack.describe_execution(run_id)
    jobs = run.get("job_names") or []
    if as_json:
        emit_json({"run": run, "states": states, "execution_status": desc["status"] if desc else None,
                   "links": stack.links(run_id, jobs[-1] if jobs else None)})
        return
    print_run(stack, run, states)
    if desc:
        out.print(f"[bold]execution[/]  {desc['status']}")


@app.command("logs")
@handle_errors
def logs_cmd(ctx: typer.Context, run_id: str = typer.Argument(..., metavar="RUN"),
             as_json: bool = typer.Option(False, "--json", help="Print [{stream, message}, ...] as JSON.")) -> None:
    """Training job logs of a run (CloudWatch Logs /aws/sagemaker/TrainingJobs)."""
    stack = state_of(ctx).stack
    run = stack.get_run(run_id)
    if as_json:
        emit_json([{"stream": stream, "message": line} for stream, line in stack.job_logs(run_id)])
        return
    count = 0
    current = None
    for stream, line in stack.job_logs(run_id):
        if stream != current:
            current = stream
            err.print(f"[bold]== {stream}[/]")
        typer.echo(line)
        count += 1
    if not count:
        jobs = ", ".join(run.get("job_names") or []) or "none yet"
        raise fail(f"no training logs for run {run_id} (training jobs: {jobs})")
