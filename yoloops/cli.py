"""`yoloops`: the command line users live in. Same commands against AWS and the local stack.

    yoloops dataset validate DIR
    yoloops [--local [DIR]] dataset push DIR --name NAME [--version V] [--weights W] [--wait]
    yoloops weights push FILE [--name N]
    yoloops runs [--watch] | run show RUN | logs RUN
    yoloops champion DATASET [--download DIR] [--repair] | promote RUN | rollback DATASET | budget
    yoloops dlq list | dlq redrive [--id MESSAGE_ID]
    yoloops local up | local interrupt JOB | demo
"""

from __future__ import annotations

import functools
import getpass
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table
from yoloops_core.pricing import format_usd

from yoloops.client import (
    DEFAULT_LOCAL_DIR,
    CliError,
    PushResult,
    Stack,
    StackNotRunning,
    WaitResult,
    default_version,
    resolve_stack,
)

app = typer.Typer(name="yoloops", no_args_is_help=True, add_completion=False,
                  help="Train, evaluate and promote YOLO models when datasets or releases land.")
dataset_app = typer.Typer(no_args_is_help=True, help="Validate and push dataset versions.")
run_app = typer.Typer(no_args_is_help=True, help="Inspect one run.")
local_app = typer.Typer(no_args_is_help=True, help="The local stack: the whole pipeline, no AWS account.")
app.add_typer(dataset_app, name="dataset")
app.add_typer(run_app, name="run")
app.add_typer(local_app, name="local")
weights_app = typer.Typer(no_args_is_help=True, help="Pretrained weights runs can start from (models/pretrained/).")
app.add_typer(weights_app, name="weights")
dlq_app = typer.Typer(no_args_is_help=True, help="Dead-letter queues: what failed, and sending it again.")
app.add_typer(dlq_app, name="dlq")

# soft_wrap: messages stay one line (greppable, copy-pasteable commands); tables still fit the width.
out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

F = TypeVar("F", bound=Callable[..., Any])
FINISHED_OK = ("PROMOTED", "KEPT")
LOCAL_DIR = Path(DEFAULT_LOCAL_DIR)
DEMO_DIR = Path(".local/demo")


class State:
    """Global options; the stack is looked up only by commands that need one."""

    def __init__(self, local: str | None, stack: str | None, region: str | None):
        self.local, self.stack_name, self.region = local, stack, region
        self._stack: Stack | None = None

    @property
    def stack(self) -> Stack:
        if self._stack is None:
            self._stack = Stack(resolve_stack(self.local, self.stack_name, self.region))
        return self._stack


def _state(ctx: typer.Context) -> State:
    return ctx.find_object(State) or State(None, None, None)


def fail(message: str, code: int = 1) -> typer.Exit:
    err.print("[bold red]error:[/] " + escape(message))
    return typer.Exit(code)


def handle_errors(fn: F) -> F:
    """Turn the errors a user can act on into one clear line and a non-zero exit."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError

        try:
            return fn(*args, **kwargs)
        except CliError as exc:
            raise fail(str(exc), exc.exit_code) from None
        except EndpointConnectionError as exc:
            msg = StackNotRunning(f"cannot reach {exc.kwargs.get('endpoint_url')}: if this is the local stack, "
                                  "start it with `yoloops local up`")
            raise fail(str(msg)) from None
        except NoCredentialsError:
            raise fail("no AWS credentials found (or use the local stack: `yoloops --local ...`)") from None
        except ClientError as exc:
            e = exc.response.get("Error", {})
            raise fail(f"AWS {exc.operation_name}: {e.get('Code')}: {e.get('Message')}") from None

    return wrapper  # type: ignore[return-value]


def emit_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, sort_keys=True, default=str))


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


# ---------------------------------------------------------------- datasets

def _validate_dir(path: Path) -> Any:
    from yoloops_core.dataset import validate_local_dataset

    if not path.is_dir():
        raise fail(f"dataset directory {path} does not exist (or is not a directory)", 2)
    return validate_local_dataset(path)


@dataset_app.command("validate")
@handle_errors
def dataset_validate(
    path: Annotated[Path, typer.Argument(help="Dataset directory (YOLO layout, data.yaml).")],
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Validate a local dataset with the same validator as the workflow; exit 1 on errors."""
    report = _validate_dir(path)
    if as_json:
        emit_json(report.model_dump(mode="json"))
    else:
        out.print(report.summary_text(), style="green" if report.valid else "red", markup=False)
    if not report.valid:
        raise typer.Exit(1)


def push(
    stack: Stack,
    path: Path,
    name: str,
    version: str | None = None,
    force: bool = False,
    workers: int = 8,
    quiet: bool = False,
    weights: str | None = None,
) -> PushResult:
    """What `yoloops dataset push` does (the demo calls this too): validate, upload, manifest last."""
    report = _validate_dir(path)
    if not report.valid:
        if not force:
            err.print(report.summary_text(), markup=False)
            raise CliError(f"refusing to push {path}: the dataset has {report.error_count} errors "
                           "(fix them, or --force to push anyway and let the workflow reject it)")
        err.print(f"[yellow]warning:[/] pushing an invalid dataset (--force): {report.error_count} errors")
    version = version or default_version()
    if weights:
        from yoloops.bundle import check_weights

        check_weights(stack, weights, name)  # a wrong name fails now, not in the workflow
    if quiet:
        return stack.push_dataset(path, name, version, workers=workers, weights=weights)
    columns = (TextColumn("[bold]uploading"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
               TextColumn("{task.fields[files]} files"), TimeRemainingColumn())
    with Progress(*columns, console=err, transient=False) as progress:
        task = progress.add_task("upload", total=report.bytes or None, files=0)
        done = {"n": 0}

        def on_file(_key: str, size: int) -> None:
            done["n"] += 1
            progress.update(task, advance=size, files=done["n"])

        result = stack.push_dataset(path, name, version, workers=workers, on_file=on_file, weights=weights)
    return result


def wait_and_report(stack: Stack, run_id: str, timeout: float, quiet: bool = False) -> WaitResult:
    last = {"state": ""}

    def on_poll(status: str, _desc: Any) -> None:
        if quiet:
            return
        states = stack.execution_states(run_id) if status != "NOT_STARTED" else []
        now = states[-1]["name"] if states else ("waiting for the S3 trigger" if status == "NOT_STARTED" else status)
        if now != last["state"]:
            last["state"] = now
            err.print(f"  [dim]{time.strftime('%H:%M:%S')}[/] {now}")

    return stack.wait_for_run(run_id, timeout=timeout, on_poll=on_poll)


@dataset_app.command("push")
@handle_errors
def dataset_push(
    ctx: typer.Context,
    path: Annotated[Path, typer.Argument(help="Dataset directory.")],
    name: str = typer.Option(..., "--name", "-n", help="Dataset name."),
    version: str | None = typer.Option(None, "--version", "-v", help="Version (default: UTC timestamp)."),
    force: bool = typer.Option(False, "--force", help="Push even if pre-flight validation finds errors."),
    wait: bool = typer.Option(False, "--wait", help="Wait for the run to finish and show its outcome."),
    timeout: float = typer.Option(3600, "--timeout", help="Seconds --wait waits at most."),
    workers: int = typer.Option(8, "--workers", min=1, max=64, help="Parallel uploads."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
    weights: str | None = typer.Option(
        None, "--weights", help="Base weights of this version's run: champion, or a .pt pushed with "
        "`yoloops weights push` (overrides the stack's BaseWeights; kept in manifest.json)."),
) -> None:
    """Upload a dataset version (manifest.json last, which starts a run) and print the run id."""
    st = _state(ctx)
    if not path.is_dir():
        raise fail(f"dataset directory {path} does not exist (or is not a directory)", 2)
    stack = st.stack
    result = push(stack, path, name, version, force=force, workers=workers, quiet=as_json, weights=weights)
    summary: dict[str, Any] = {"dataset": result.dataset, "version": result.version, "run_id": result.run_id,
                               "files": result.files, "bytes": result.bytes,
                               "manifest": f"s3://{stack.bucket}/{result.manifest_key}"}
    if not as_json:
        out.print(f"pushed [bold]{result.dataset}/{result.version}[/]: {result.files} files, "
                  f"{result.bytes / 1e6:.1f} MB, manifest s3://{stack.bucket}/{result.manifest_key}")
        out.print(f"run id: [bold cyan]{result.run_id}[/]")
    if not wait:
        if as_json:
            emit_json(summary)
        return
    waited = wait_and_report(stack, result.run_id, timeout, quiet=as_json)
    summary.update(execution_status=waited.execution_status, run=waited.run)
    if as_json:
        emit_json(summary)
    else:
        if waited.run:
            print_run(stack, waited.run, [])
        else:
            out.print(f"execution status: {waited.execution_status}")
    status = (waited.run or {}).get("status")
    if status not in FINISHED_OK:
        raise typer.Exit(1)


# ---------------------------------------------------------------- runs

def _metric(run: dict[str, Any], name: str = "mAP50-95") -> str:
    value = (run.get("metrics") or {}).get(name)
    return f"{value:.4f}" if isinstance(value, int | float) else "-"


def _money(value: Any) -> str:
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
                      str(r.get("interruptions", 0)), _metric(r), _money(r.get("cost_usd")),
                      (r.get("started_at") or "")[:19])
    return table


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
    stack = _state(ctx).stack
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
        ("cost", f"{_money(run.get('cost_usd'))} (worst case {_money(run.get('worst_case_cost_usd'))}, "
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


@run_app.command("show")
@handle_errors
def run_show(
    ctx: typer.Context,
    run_id: str = typer.Argument(..., metavar="RUN"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Status, states, attempts, interruptions, metrics, cost and links of one run."""
    stack = _state(ctx).stack
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
def logs_cmd(ctx: typer.Context, run_id: str = typer.Argument(..., metavar="RUN")) -> None:
    """Training job logs of a run (CloudWatch Logs /aws/sagemaker/TrainingJobs)."""
    stack = _state(ctx).stack
    run = stack.get_run(run_id)
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


# ---------------------------------------------------------------- champions

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
    from yoloops import bundle

    stack = _state(ctx).stack
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
) -> None:
    """Upload weights under models/pretrained/, for BaseWeights, `dataset push --weights` or a release's yaml."""
    from yoloops.bundle import push_weights

    stack = _state(ctx).stack
    key = push_weights(stack, file, name)
    out.print(f"uploaded s3://{stack.bucket}/{key}")
    name = key.removeprefix("models/pretrained/")
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
    result = _state(ctx).stack.promote(run_id, user=getpass.getuser())
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
    result = _state(ctx).stack.rollback(dataset, user=getpass.getuser())
    if as_json:
        emit_json(result)
        return
    out.print(f"{dataset}: champion rolled back from {result['rolled_back_run_id']} to "
              f"[bold green]{result['champion'].get('run_id')}[/]; recorded and notified")


@app.command("budget")
@handle_errors
def budget_cmd(ctx: typer.Context, as_json: bool = typer.Option(False, "--json")) -> None:
    """This month's spend, worst case of runs in flight, and what remains of the budget."""
    b = _state(ctx).stack.budget()
    if as_json:
        emit_json(b)
        return
    t = Table(title=f"budget {b['month']}", expand=False, show_header=False)
    t.add_column(style="bold")
    t.add_column(justify="right")
    t.add_row("monthly budget", _money(b["budget_usd"]))
    t.add_row("spent (ended attempts)", _money(b["spent_usd"]))
    t.add_row(f"reserved in flight, worst case ({b['in_flight_runs']} runs)", _money(b["in_flight_usd"]))
    colour = "green" if b["remaining_usd"] > 0 else "red"
    t.add_row("remaining", f"[{colour}]{_money(b['remaining_usd'])}[/]")
    price = b.get("price") or {}
    if price.get("hourly_usd") is not None:
        t.add_row("hourly price", f"{format_usd(price['hourly_usd'])}/h")
    out.print(t)
    if b.get("datasets"):
        per = Table(title="this month by dataset", expand=False)
        for col in ("dataset", "runs", "cost"):
            per.add_column(col, justify="left" if col == "dataset" else "right")
        for name, row in sorted(b["datasets"].items()):
            per.add_row(escape(name), str(row["runs"]), _money(row["cost_usd"]))
        out.print(per)
    if price:
        out.print(_price_line(price))


def _price_line(price: dict[str, Any]) -> str:
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


# ---------------------------------------------------------------- dead-letter queues

@dlq_app.command("list")
@handle_errors
def dlq_list(ctx: typer.Context, queue: str | None = typer.Option(None, "--queue", help="e.g. notifications, triggers"),
             as_json: bool = typer.Option(False, "--json")) -> None:
    """What failed: every message waiting in the stack's dead-letter queues."""
    letters = _state(ctx).stack.dlq_list(queue)
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
    result = _state(ctx).stack.dlq_redrive(queue, set(ids) if ids else None)
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


# ---------------------------------------------------------------- local stack

@local_app.command("up")
@handle_errors
def local_up(
    port: int = typer.Option(0, "--port", help="moto server port (0: any free port)."),
    workdir: Annotated[Path, typer.Option("--dir", help="Working directory of the stack.")] = LOCAL_DIR,
    epochs: int | None = typer.Option(None, "--epochs", help="Default training epochs of runs (default 8)."),
    parameter_overrides: Annotated[list[str] | None, typer.Option(
        "--parameter-overrides", help="Template parameters as `sam deploy` takes them: 'Key=Value Key2=Value2' "
        "(or repeat the option); checked as CloudFormation checks them.")] = None,
) -> None:
    """Start the local stack (moto server, template deployed, local training) until Ctrl-C."""
    from yoloops.demo import DemoSettings, start_local_stack
    from yoloops.local.deploy import DeployError
    from yoloops.local.release import ReleaseError, parse_parameter_overrides

    try:
        overrides = parse_parameter_overrides(parameter_overrides or [])
    except ReleaseError as exc:
        raise CliError(str(exc)) from None
    # Runs train on this machine's CPU: the demo's tiny hyperparameters are the stack's defaults.
    hp = DemoSettings(**({"epochs": epochs} if epochs else {})).training_hyperparameters()
    try:
        stack = start_local_stack(workdir, port=port, hyperparameters=hp, parameters=overrides)
    except DeployError as exc:
        raise CliError(f"cannot deploy the local stack: {exc}") from None
    try:
        outputs = stack.outputs
        out.print(f"[bold green]local stack up[/] in {workdir}/")
        out.print(f"  endpoint   {stack.endpoint_url}")
        out.print(f"  bucket     {outputs.get('ArtifactsBucketName')}")
        out.print(f"  webhook    {outputs.get('GithubWebhookUrl', '-')}")
        out.print(f"  state machine {outputs.get('TrainingStateMachineArn')}")
        out.print("\nIn another shell:")
        out.print(f"  export AWS_ENDPOINT_URL={stack.endpoint_url} AWS_ACCESS_KEY_ID=testing "
                  "AWS_SECRET_ACCESS_KEY=testing AWS_DEFAULT_REGION=us-east-1")
        out.print(f"  export YOLOOPS_LOCAL={workdir}")
        out.print("  yoloops dataset push DIR --name shapes --wait")
        out.print("\nCtrl-C stops it.")
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        err.print("stopping the local stack")
    finally:
        stack.stop()


@local_app.command("release")
@handle_errors
def local_release_cmd(
    ctx: typer.Context,
    tag: str = typer.Argument(..., help="Release tag = training image tag (e.g. v1.2.0)."),
    dataset: str | None = typer.Option(None, "--dataset", help="NAME or NAME/VERSION to train (default: newest)."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Do what CI + GitHub do on a release: push the image tag to local ECR, POST the signed webhook."""
    from yoloops.local.release import ReleaseError, local_release

    st = _state(ctx)
    st.local = st.local or os.environ.get("YOLOOPS_LOCAL") or DEFAULT_LOCAL_DIR
    if not st.stack.info.local:
        raise CliError("`local release` needs the local stack (`yoloops local up`)")
    try:
        result = local_release(st.stack, tag, dataset=dataset)
    except ReleaseError as exc:
        raise CliError(str(exc)) from None
    if as_json:
        emit_json(result)
    else:
        out.print(f"image {result['image']} ({result['digest'][:19]}...) registered; webhook answered {result['status']}")
        if result.get("run_id"):
            out.print(f"run {result['run_id']} {'started' if result.get('started') else 'already exists'}")
        if result.get("reason") or result.get("error"):
            err.print(escape(str(result.get("reason") or result.get("error"))))
    if result["status"] >= 300:
        raise typer.Exit(1)


@local_app.command("interrupt")
@handle_errors
def local_interrupt(
    ctx: typer.Context,
    job: str = typer.Argument(..., help="Training job name (<run id>-a<attempt>)."),
) -> None:
    """Interrupt a local training job the way a spot interruption does (it resumes from its checkpoint)."""
    import urllib.error
    import urllib.request

    st = _state(ctx)
    st.local = st.local or os.environ.get("YOLOOPS_LOCAL") or DEFAULT_LOCAL_DIR
    info = st.stack.info
    if not info.local or not info.control_url:
        raise CliError("`local interrupt` needs the local stack (`yoloops local up`)")
    req = urllib.request.Request(f"{info.control_url.rstrip('/')}/interrupt/{job}", method="POST", data=b"")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            body = resp.read().decode() or "ok"
    except urllib.error.HTTPError as exc:
        raise CliError(f"cannot interrupt {job}: {exc.code} {exc.read().decode(errors='replace')}") from exc
    except urllib.error.URLError as exc:
        raise StackNotRunning(f"the local stack control endpoint {info.control_url} is not answering: "
                              "start it with `yoloops local up`") from exc
    out.print(f"interrupted {job}: {body}")


@app.command("demo")
@handle_errors
def demo_cmd(
    workdir: Annotated[Path, typer.Option("--dir", help="Working directory (wiped first).")] = DEMO_DIR,
    keep_up: bool = typer.Option(False, "--keep-up", help="Leave the stack running for exploration."),
    epochs: int | None = typer.Option(None, "--epochs", min=1, help="Training epochs (default: the demo recipe's)."),
    imgsz: int | None = typer.Option(None, "--imgsz", min=32, help="Image size (default: the demo recipe's)."),
) -> None:
    """The whole pipeline on this machine: local stack, dataset push, training, promotion, Slack."""
    from yoloops.demo import DemoSettings, run_demo

    overrides = {k: v for k, v in (("epochs", epochs), ("imgsz", imgsz)) if v is not None}
    ok = run_demo(DemoSettings(workdir=workdir, keep_up=keep_up, **overrides))
    if not ok:
        raise typer.Exit(1)


if __name__ == "__main__":  # pragma: no cover
    app()
