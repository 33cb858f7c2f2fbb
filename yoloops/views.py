"""How the CLI shows runs, budgets and prices: rich tables and lines shared by commands and the demo.

A layer above yoloops.client and below yoloops.cli and yoloops.demo (which both print runs).
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from yoloops_core.pricing import format_usd
from yoloops_core.verdict_report import verdict_text

from yoloops.client import Stack

# soft_wrap: messages stay one line (greppable, copy-pasteable commands); tables still fit the width.
out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def metric_text(run: dict[str, Any], name: str = "mAP50-95") -> str:
    value = (run.get("metrics") or {}).get(name)
    return f"{value:.4f}" if isinstance(value, int | float) else "-"


def money(value: Any) -> str:
    return format_usd(value) if isinstance(value, int | float) else "-"


def runs_table(runs: list[dict[str, Any]]) -> Table:
    table = Table(title=f"{len(runs)} runs", expand=False)
    for col in ("run", "status", "dataset", "version", "attempts", "interr.", "mAP50-95", "cost", "started"):
        table.add_column(col, no_wrap=col in ("run", "status"))
    colours = {"PROMOTED": "green", "KEPT": "cyan", "FAILED": "red", "REJECTED": "red", "BUDGET_BLOCKED": "yellow"}
    for r in runs:
        status = r.get("status", "?")
        table.add_row(r.get("run_id", "?"), f"[{colours.get(status, 'white')}]{status}[/]",
                      r.get("dataset") or "-", r.get("dataset_version") or "-", str(r.get("attempts", 0)),
                      str(r.get("interruptions", 0)), metric_text(r), money(r.get("cost_usd")),
                      (r.get("started_at") or "")[:19])
    return table


def print_run(stack: Stack, run: dict[str, Any], states: list[dict[str, Any]]) -> None:
    rid = run.get("run_id", "?")
    jobs = run.get("job_names") or []
    t = Table.grid(padding=(0, 2))
    t.add_column(style="bold")
    t.add_column()
    rows = [
        ("run", rid),
        ("status", str(run.get("status"))),
        ("dataset", f"{run.get('dataset') or '-'} / {run.get('dataset_version') or '-'}"),
        ("trigger", f"{run.get('trigger_source') or '-'}: {run.get('trigger_ref') or '-'}"),
        ("started", run.get("started_at") or "-"),
        ("finished", run.get("finished_at") or "-"),
        ("attempts", str(run.get("attempts", 0))),
        ("jobs", ", ".join(jobs) or "-"),
        ("interruptions", f"{run.get('interruptions', 0)} {run.get('interruptions_by_attempt') or ''}".strip()),
        ("cost", f"{money(run.get('cost_usd'))} (worst case {money(run.get('worst_case_cost_usd'))}, "
                 f"billable {run.get('billable_seconds', '-')} s"
                 + (f", spot saved {run['spot_savings_pct']:.1f}%" if isinstance(run.get("spot_savings_pct"), int | float)
                    else "") + ")"),
    ]
    for key, value in rows:
        t.add_row(key, value)
    metrics = run.get("metrics") or {}
    if metrics:
        champ = run.get("champion_metrics") or {}
        t.add_row("metrics", "  ".join(
            f"{k}={v:.4f}" + (f" (champion {champ[k]:.4f})" if isinstance(champ.get(k), int | float) else "")
            for k, v in sorted(metrics.items()) if isinstance(v, int | float)))
    if run.get("delta") is not None:
        t.add_row("delta", f"{run['delta']:+.4f}" if isinstance(run["delta"], int | float) else str(run["delta"]))
    for key in ("failure_reason", "error"):
        if run.get(key):
            t.add_row(key.replace("_", " "), f"[red]{run[key]}[/]")
    if states:
        t.add_row("states", " -> ".join(s["name"] for s in states))
    for name, link in stack.links(rid, jobs[-1] if jobs else None).items():
        t.add_row(name, link)
    out.print(t)
    if run.get("verdict"):
        # The same table as the run's Slack message and verdict.json (yoloops_core.verdict_report).
        out.print(escape(verdict_text(run["verdict"])), highlight=False)


def price_line(price: dict[str, Any]) -> str:
    """The price the gate uses, where it came from and how old it is (one line: it is read, not scanned)."""
    if price.get("error"):
        return f"[red]price: {escape(price['error'])}[/]"
    what = f"price: {format_usd(price['hourly_usd'])}/h for {price['instance_type']} in {price['region']}"
    if price["source"] == "price-list-api":
        stale = " [red](stale: is RefreshPrices failing?)[/]" if price.get("stale") else ""
        return f"{what} from the AWS Price List API, effective {price['as_of']}, fetched {price['age_days']} d ago{stale}"
    if price["source"] == "shipped-table":
        return (f"{what} from the shipped table of {price['as_of']} ({price['age_days']} d old; "
                "no Price List API price cached for this region)")
    return f"{what}: override (template parameter HourlyPriceOverrideUsd)"
