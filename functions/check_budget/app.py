"""CheckBudget step: admit one attempt (first or retry) within the monthly budget; return its plan."""

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext
from yoloops_core.aws import client
from yoloops_core.config import get_settings
from yoloops_core.gate import CheckBudgetEvent, check_budget
from yoloops_core.ledger import BudgetLedger
from yoloops_core.models import parse_model
from yoloops_core.rerun import run_settings
from yoloops_core.store import RunStore

logger = Logger()


# The run id is the correlation id of every log line (docs/architecture.md "Logs").
@logger.inject_lambda_context(clear_state=True, correlation_id_path="run.run_id")
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    step = parse_model(CheckBudgetEvent, event, "CheckBudget input")
    settings = run_settings(get_settings(), step.run)
    logger.append_keys(run_id=step.run.run_id)
    return check_budget(step, settings=settings, store=RunStore(settings.runs_table),
                        ledger=BudgetLedger(settings.runs_table), sns=client("sns"),
                        budgets=client("budgets") if settings.budget_name else None)
