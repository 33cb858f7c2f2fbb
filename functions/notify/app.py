"""Notify step (every outcome, and the failure path of every state): final run record + one SNS message.

The event is deliberately not validated into a strict model: this step must report ANY state,
including malformed execution input (yoloops_core.outcomes copes with every shape).
"""

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext
from yoloops_core.aws import client
from yoloops_core.config import get_settings
from yoloops_core.ledger import BudgetLedger
from yoloops_core.outcomes import notify
from yoloops_core.store import RunStore

logger = Logger()


# The run id is the correlation id of every log line (docs/architecture.md "Logs").
@logger.inject_lambda_context(clear_state=True, correlation_id_path="run_id")
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    settings = get_settings()
    return notify(event, settings=settings, store=RunStore(settings.runs_table), sns=client("sns"),
                  ledger=BudgetLedger(settings.runs_table), sagemaker=client("sagemaker"))
