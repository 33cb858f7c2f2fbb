"""Reconcile: an execution ended FAILED / TIMED_OUT / ABORTED -> stop its jobs, close its run, notify."""

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext
from yoloops_core.aws import client
from yoloops_core.config import get_settings
from yoloops_core.ledger import BudgetLedger
from yoloops_core.models import parse_model
from yoloops_core.reconcile import ExecutionStatusEvent, on_execution_status
from yoloops_core.store import RunStore

logger = Logger()


@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    settings = get_settings()
    step = parse_model(ExecutionStatusEvent, event, "execution status change event")
    logger.set_correlation_id(step.detail.name)
    return on_execution_status(step, settings=settings, store=RunStore(settings.runs_table),
                               ledger=BudgetLedger(settings.runs_table), sagemaker=client("sagemaker"),
                               sns=client("sns"))
