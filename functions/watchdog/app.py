"""Watchdog (scheduled): stop orphan training jobs, close stuck or missed runs, settle reservations,
repair champions whose files disagree with their record."""

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext
from yoloops_core.aws import client
from yoloops_core.config import get_settings
from yoloops_core.ledger import BudgetLedger
from yoloops_core.promote import repair_champion
from yoloops_core.store import RunStore
from yoloops_core.watchdog import sweep

logger = Logger()


@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    settings = get_settings()
    store = RunStore(settings.runs_table)
    report = sweep(settings=settings, store=store, ledger=BudgetLedger(settings.runs_table),
                   sagemaker=client("sagemaker"), sfn=client("stepfunctions"), sns=client("sns"),
                   repair=lambda dataset: repair_champion(dataset, store, client("s3"),
                                                          bucket=settings.artifacts_bucket)["repaired"])
    return report.model_dump()
