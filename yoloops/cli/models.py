"""`yoloops champion | promote | rollback | weights push`: the models runs start from and end in."""

from __future__ import annotations

import getpass
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from yoloops import bundle
from yoloops.cli.common import emit_json, handle_errors, state_of
from yoloops.views import out

app = typer.Typer()
weights_app = typer.Typer(no_args_is_help=True, help="Pretrained weights runs can start from (models/pretrained/).")
app.add_typer(weights_app, name="weights")


@app.command("champion")
@handle_errors
def champion_cmd(
    ctx: typer.Context,
    dataset: str = typer.Argument(...),
    as_json: bool = typer.Option(False, "--json"),
    download: Annotated[Path | None, typer.Option("--download", help="Fetch the champion's model bundle into DIR.")] = None,
    repair: bool = typer.Option(False, "--repair", help="Make champion/ and the Model Registry match the record."),
) -> None:
    """The current champion model of a dataset, its bundle, and how it got there."""
    stack = state_of(ctx).stack
    champion = stack.require_champion(dataset)
    history = stack.champion_history(dataset)
    fixed = bundle.repair(stack, dataset) if repair else None
    fetched = bundle.download_champion(stack, dataset, download) if download else None
    files = bundle.champion_files(stack, dataset)
    if as_json:
        emit_json({"dataset": dataset, "champion": champion, "history": history, "bundle": files,
                   **({"repair": fixed} if fixed is not None else {}),
                   **({"downloaded": [str(f) for f in fetched]} if fetched is not None else {})})
        return
    value = champion.get("metric_value")
    value_text = f"{value:.4f}" if isinstance(value, int | float) else "-"
    out.print(f"champion of [bold]{dataset}[/]: [bold green]{champion.get('run_id')}[/] "
              f"{champion.get('metric')}={value_text}  since {champion.get('promoted_at')}")
    out.print(f"  model s3://{stack.bucket}/{champion.get('model_key')}  previous: {champion.get('previous_run_id') or '-'}")
    out.print(f"  bundle s3://{stack.bucket}/models/{dataset}/champion/: "
              + (", ".join(f"{escape(k)} ({v / 1e6:.2f} MB)" for k, v in sorted(files.items())) or "[red]empty[/]"))
    if fixed is not None:
        out.print("  repaired: " + (escape(fixed.get("why") or "") if fixed.get("repaired") else "nothing to repair")
                  + (f" [red]{escape(fixed['registry_error'])}[/]" if fixed.get("registry_error") else ""))
    if fetched is not None:
        out.print(f"  downloaded {len(fetched)} files to {escape(str(download))}/")
    if history:
        table = Table(title="history", expand=False)
        for col in ("at", "action", "run", "metric", "by"):
            table.add_column(col)
        for h in history[:20]:
            v = h.get("metric_value")
            table.add_row(h.get("at", ""), h.get("action", ""), h.get("run_id", ""),
                          f"{v:.4f}" if isinstance(v, int | float) else "-", h.get("actor") or "workflow")
        out.print(table)


@weights_app.command("push")
@handle_errors
def weights_push(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="A .pt file (e.g. COCO-pretrained yolo12s.pt).")],
    name: str | None = typer.Option(None, "--name", "-n", help="Name under models/pretrained/ (default: file name)."),
    as_json: bool = typer.Option(False, "--json", help="Print {key, uri, name} as JSON."),
) -> None:
    """Upload weights under models/pretrained/, for BaseWeights, `dataset push --weights` or a release's yaml."""
    stack = state_of(ctx).stack
    key = bundle.push_weights(stack, file, name)
    name = key.removeprefix("models/pretrained/")
    if as_json:
        emit_json({"key": key, "uri": f"s3://{stack.bucket}/{key}", "name": name})
        return
    out.print(f"uploaded s3://{stack.bucket}/{key}")
    out.print(f"use it: BaseWeights={name} (template parameter), "
              f"`yoloops dataset push DIR --name N --weights {name}`, or `weights: {name}` in a release's yaml block")


@app.command("promote")
@handle_errors
def promote_cmd(
    ctx: typer.Context,
    run_id: str = typer.Argument(..., metavar="RUN"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Make a finished run the champion of its dataset (manual override, recorded and notified)."""
    result = bundle.promote(state_of(ctx).stack, run_id, user=getpass.getuser())
    if as_json:
        emit_json(result)
        return
    out.print(f"[bold green]{run_id}[/] is now the champion of {result['dataset']} "
              f"(was {result['previous_run_id'] or 'none'}); recorded and notified")


@app.command("rollback")
@handle_errors
def rollback_cmd(
    ctx: typer.Context,
    dataset: str = typer.Argument(...),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Put the previous champion of a dataset back (recorded and notified)."""
    result = bundle.rollback(state_of(ctx).stack, dataset, user=getpass.getuser())
    if as_json:
        emit_json(result)
        return
    out.print(f"{dataset}: champion rolled back from {result['rolled_back_run_id']} to "
              f"[bold green]{result['champion'].get('run_id')}[/]; recorded and notified")
