"""`yoloops approve RUN | reject RUN [--reason TEXT]`: decide a run's pending approval (RequireApproval).

The same decision as the Approve / Reject buttons in the run's Slack thread: the first one wins.
"""

from __future__ import annotations

import getpass

import typer
from rich.markup import escape

from yoloops.cli.common import emit_json, handle_errors, state_of
from yoloops.client import CliError
from yoloops.views import out

app = typer.Typer()


def _caller(stack) -> str:
    """Who decides: the AWS identity (an IAM ARN), else the local user name (the local stack)."""
    if not stack.info.local:
        try:
            return "cli " + stack.client("sts").get_caller_identity()["Arn"]
        except Exception:  # no sts permission: the user name still says who
            pass
    return f"cli user {getpass.getuser()}"


def _decide(ctx: typer.Context, run_id: str, approve: bool, reason: str | None, stage: str | None,
            as_json: bool) -> None:
    from yoloops_core.approval import ApprovalNotPending, ApprovalStore, decide

    stack = state_of(ctx).stack
    try:
        decision = decide(run_id, approve, _caller(stack), approvals=ApprovalStore(stack.runs_table,
                          stack.client("dynamodb")), store=stack.store, sfn=stack.client("stepfunctions"),
                          sns=stack.client("sns"), topic_arn=stack.topic_arn, reason=reason, stage=stage)
    except ApprovalNotPending as exc:
        raise CliError(str(exc)) from None
    if as_json:
        emit_json(decision.model_dump(mode="json"))
        return
    out.print(f"{escape(decision.stage)} of run {escape(run_id)} [bold]{decision.decision}[/] by "
              f"{escape(decision.decided_by)}" + (f": {escape(reason)}" if reason else ""))


STAGE_HELP = "train or promote (default: whichever is waiting)."


@app.command("approve")
@handle_errors
def approve_cmd(ctx: typer.Context, run_id: str = typer.Argument(..., metavar="RUN"),
                stage: str | None = typer.Option(None, "--stage", help=STAGE_HELP),
                as_json: bool = typer.Option(False, "--json")) -> None:
    """Approve the run's pending approval: it trains, or promotes its model."""
    _decide(ctx, run_id, True, None, stage, as_json)


@app.command("reject")
@handle_errors
def reject_cmd(ctx: typer.Context, run_id: str = typer.Argument(..., metavar="RUN"),
               reason: str | None = typer.Option(None, "--reason", help="Why (recorded and told in Slack)."),
               stage: str | None = typer.Option(None, "--stage", help=STAGE_HELP),
               as_json: bool = typer.Option(False, "--json")) -> None:
    """Reject the run's pending approval: before training the run ends (reservation released); before
    promotion the champion is kept."""
    _decide(ctx, run_id, False, reason, stage, as_json)
