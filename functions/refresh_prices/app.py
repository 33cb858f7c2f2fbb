"""Scheduled (EventBridge): cache the Price List API's SageMaker Training price for the stack's region,
and publish how far the budget ledger trails AWS Budgets' actual spend (LedgerDriftAlarm).

Raising when the configured type got no price is deliberate: the function's error alarm tells the team
that the budget gate is running on the cached or shipped price.
"""

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.data_classes import EventBridgeEvent, event_source
from aws_lambda_powertools.utilities.typing import LambdaContext
from yoloops_core.aws import client
from yoloops_core.config import get_settings
from yoloops_core.ledger import BudgetLedger
from yoloops_core.ledger_check import daily_checks
from yoloops_core.prices import pricing_endpoint_region
from yoloops_core.store import RunStore

logger = Logger()


@logger.inject_lambda_context(clear_state=True)
@event_source(data_class=EventBridgeEvent)
def lambda_handler(event: EventBridgeEvent, context: LambdaContext) -> dict:
    settings = get_settings()
    pricing = client("pricing", pricing_endpoint_region(settings.region))
    return daily_checks(settings, store=RunStore(settings.runs_table), pricing=pricing,
                        ledger=BudgetLedger(settings.runs_table), budgets=client("budgets"),
                        account=context.invoked_function_arn.split(":")[4])
