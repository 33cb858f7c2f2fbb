"""`yoloops dlq list | redrive`: what failed for good, and sending it again."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from yoloops.cli.common import emit_json, handle_errors, state_of
from yoloops.views import err, out

app = typer.Typer()
dlq_app = typer.Typer(no_args_is_help=True, help="Dead-letter queues: what failed, and sending it again.")
app.add_typer(dlq_app, name="dlq")


@dlq_app.command("list")
@handle_errors
def dlq_list(ctx: typer.Context, queue: str | None = typer.Option(None, "--queue", help="e.g. notifications, triggers"),
             as_json: bool = typer.Option(False, "--json")) -> None:
    """What failed: every message waiting in the stack's dead-letter queues."""
    letters = state_of(ctx).stack.dlq_list(queue)
    if as_json:
        emit_json(letters)
        return
    if not letters:
        out.print("no dead letters")
        return
    t = Table(title="dead letters", expand=False)
    for col in ("queue", "sent", "kind", "what", "error", "message id"):
        t.add_column(col)
    for d in letters:
        t.add_row(d["queue"], d["sent_at"] or "-", d["kind"], escape(d["summary"]),
                  escape((d["error"] or "-")[:120]), d["message_id"])
    out.print(t)
    out.print("send them again: yoloops dlq redrive [--id MESSAGE_ID]")


@dlq_app.command("redrive")
@handle_errors
def dlq_redrive(ctx: typer.Context, queue: str | None = typer.Option(None, "--queue"),
                ids: Annotated[list[str] | None, typer.Option("--id", help="Only these message ids (repeatable).")] = None,
                as_json: bool = typer.Option(False, "--json")) -> None:
    """Send dead letters again to where they were going (the function, or the source queue)."""
    result = state_of(ctx).stack.dlq_redrive(queue, set(ids) if ids else None)
    if as_json:
        emit_json(result)
    else:
        for r in result["redriven"]:
            out.print(f"redriven {r['message_id']} ({escape(r['summary'])}) -> {r['to']}")
        for r in result["skipped"]:
            err.print(f"[yellow]kept[/] {r['message_id']} ({escape(r['summary'])}): {r['reason']}")
        if not result["redriven"] and not result["skipped"]:
            out.print("no dead letters")
    if result["skipped"]:
        raise typer.Exit(1)
