"""`yoloops budget`: this month's spend, what runs in flight may still cost, and the price used."""

from __future__ import annotations

import typer
from rich.markup import escape
from rich.table import Table
from yoloops_core.pricing import format_usd

from yoloops.cli.common import emit_json, handle_errors, state_of
from yoloops.views import money, out, price_line

app = typer.Typer()


@app.command("budget")
@handle_errors
def budget_cmd(ctx: typer.Context, as_json: bool = typer.Option(False, "--json")) -> None:
    """This month's spend, worst case of runs in flight, and what remains of the budget."""
    b = state_of(ctx).stack.budget()
    if as_json:
        emit_json(b)
        return
    t = Table(title=f"budget {b['month']}", expand=False, show_header=False)
    t.add_column(style="bold")
    t.add_column(justify="right")
    t.add_row("monthly budget", money(b["budget_usd"]))
    t.add_row("spent (ended attempts)", money(b["spent_usd"]))
    t.add_row(f"reserved in flight, worst case ({b['in_flight_runs']} runs)", money(b["in_flight_usd"]))
    colour = "green" if b["remaining_usd"] > 0 else "red"
    t.add_row("remaining", f"[{colour}]{money(b['remaining_usd'])}[/]")
    price = b.get("price") or {}
    if price.get("hourly_usd") is not None:
        t.add_row("hourly price", f"{format_usd(price['hourly_usd'])}/h")
    out.print(t)
    if b.get("datasets"):
        per = Table(title="this month by dataset", expand=False)
        for col in ("dataset", "runs", "cost"):
            per.add_column(col, justify="left" if col == "dataset" else "right")
        for name, row in sorted(b["datasets"].items()):
            per.add_row(escape(name), str(row["runs"]), money(row["cost_usd"]))
        out.print(per)
    if price:
        out.print(price_line(price))
