"""`yoloops`: the command line users live in. Same commands against AWS and the local stack.

    yoloops dataset validate DIR
    yoloops [--local [DIR]] dataset push DIR --name NAME [--version V] [--weights W] [--wait]
    yoloops weights push FILE [--name N]
    yoloops runs [--watch] | run show RUN | logs RUN
    yoloops train DATASET[@VERSION] [--set k=v ...] | run retry RUN [--set k=v ...]
    yoloops champion DATASET [--download DIR] [--repair] | promote RUN | rollback DATASET | budget
    yoloops dlq list | dlq redrive [--id MESSAGE_ID]
    yoloops local up | local interrupt JOB | demo
    yoloops image probe [--instance-type T]
    yoloops doctor [--json] [--no-slack]

One module per command group, each with its own `app` merged here; they share yoloops.cli.common and
never import this module (add a group: a module with `app = typer.Typer()`, one line below).
"""

from __future__ import annotations

import typer

from yoloops.cli import approval, budget, datasets, dlq, doctor, image, local, models, runs, sweep, train
from yoloops.cli.common import State
from yoloops.client import DEFAULT_LOCAL_DIR

app = typer.Typer(name="yoloops", no_args_is_help=True, add_completion=False,
                  help="Train, evaluate and promote YOLO models when datasets or releases land.")
for group in (datasets, runs, models, budget, dlq, local, approval, image, train, sweep, doctor):
    app.add_typer(group.app)


@app.callback()
def main(
    ctx: typer.Context,
    local: str | None = typer.Option(
        None, "--local", metavar="DIR",
        help=f"Use the local stack that `yoloops local up --dir DIR` runs (its default DIR is {DEFAULT_LOCAL_DIR}); "
             "env YOLOOPS_LOCAL.",
    ),
    stack: str | None = typer.Option(None, "--stack", help="CloudFormation stack name (env YOLOOPS_STACK, "
                                     "default yoloops-dev)."),
    region: str | None = typer.Option(None, "--region", help="AWS region of the stack."),
) -> None:
    ctx.obj = State(local, stack, region)


if __name__ == "__main__":  # pragma: no cover
    app()
