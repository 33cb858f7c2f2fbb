"""`yoloops image probe`: run the stack's training image once on an instance type and show what it finds."""

from __future__ import annotations

import typer
from rich.markup import escape

from yoloops.cli.common import emit_json, handle_errors, state_of
from yoloops.views import out

app = typer.Typer()
image_app = typer.Typer(no_args_is_help=True, help="The training image on real instance types.")
app.add_typer(image_app, name="image")


@image_app.command("probe")
@handle_errors
def probe_cmd(
    ctx: typer.Context,
    instance_type: str | None = typer.Option(None, "--instance-type", help="e.g. ml.g5.xlarge (default: the "
                                             "stack's InstanceType)."),
    timeout: float = typer.Option(3600, "--timeout", help="Seconds to wait for the probe job."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """A short on-demand job (budget-gated) that reports driver, CUDA, GPUs and archs, /dev/shm, disks, the
    checkpoint mount, vCPUs, RAM and the image pull time; recorded at s3://<bucket>/probes/<job>.json."""
    from yoloops.probe import run_probe, summary_lines

    record = run_probe(state_of(ctx).stack, instance_type, timeout_s=timeout)
    if as_json:
        emit_json(record)
    else:
        for line in summary_lines(record):
            out.print(escape(line))
    if record["status"] != "Completed":
        raise typer.Exit(1)
