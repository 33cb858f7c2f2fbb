"""Sweep steps (statemachine/sweep.asl.json): reserve N x one job's worst case and plan the tuning job;
after it, settle every training job, post the leaderboard, hand the best job to the verdict."""

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext
from yoloops_core.aws import client
from yoloops_core.config import get_settings
from yoloops_core.ledger import BudgetLedger
from yoloops_core.models import parse_model
from yoloops_core.store import RunStore
from yoloops_core.sweep import SweepStepEvent, sweep_step

logger = Logger()


# The run id is the correlation id of every log line (docs/architecture.md "Logs").
@logger.inject_lambda_context(clear_state=True, correlation_id_path="run.run_id")
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    s = get_settings()
    step = parse_model(SweepStepEvent, event, "sweep step input")
    store = RunStore(s.runs_table)
    return sweep_step(step, settings=s, store=store, ledger=BudgetLedger(s.runs_table), sns=client("sns"),
                      sagemaker=client("sagemaker"), prices=store, budgets=client("budgets") if s.budget_name else None)
