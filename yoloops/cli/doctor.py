"""`yoloops doctor`: red/green checks of the deployed (or local) stack, each red line with its fix."""

from __future__ import annotations

import typer
from rich.markup import escape

from yoloops.cli.common import emit_json, handle_errors, state_of
from yoloops.views import out

app = typer.Typer()

MARKS = {"ok": "[green]ok  [/]", "warn": "[yellow]warn[/]", "fail": "[bold red]FAIL[/]", "skip": "[dim]skip[/]"}


@app.command("doctor")
@handle_errors
def doctor_cmd(ctx: typer.Context, as_json: bool = typer.Option(False, "--json"),
               no_slack: bool = typer.Option(False, "--no-slack", help="Skip the Slack test post.")) -> None:
    """Check the stack before (and after) the first run: identity, quotas, secrets, Slack, image, price,
    budget, rules, dead letters. Exit code 1 when any line is red."""
    from yoloops.doctor import run_doctor

    report = run_doctor(state_of(ctx).stack, slack_post=not no_slack)
    if as_json:
        emit_json(report)
    else:
        out.print(f"yoloops doctor: {escape(report['stack'])} ({report['region']})")
        for c in report["checks"]:
            out.print(f"  {MARKS[c['status']]} {escape(c['name'])}: {escape(c['detail'])}")
            if c["fix"] and c["status"] in ("fail", "warn"):
                out.print(f"         fix: {escape(c['fix'])}")
        fails = sum(c["status"] == "fail" for c in report["checks"])
        out.print("[green]all green[/]" if not fails else f"[bold red]{fails} red line(s)[/]")
    if not report["ok"]:
        raise typer.Exit(1)
