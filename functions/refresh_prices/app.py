"""Scheduled (EventBridge): cache the Price List API's SageMaker Training price for the stack's region.

Raising when the configured type got no price is deliberate: the function's error alarm tells the team
that the budget gate is running on the cached or shipped price.
"""

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.data_classes import EventBridgeEvent, event_source
from aws_lambda_powertools.utilities.typing import LambdaContext
from yoloops_core.aws import client
from yoloops_core.config import get_settings
from yoloops_core.prices import pricing_endpoint_region, refresh_prices
from yoloops_core.store import RunStore

logger = Logger()


@logger.inject_lambda_context(clear_state=True)
@event_source(data_class=EventBridgeEvent)
def lambda_handler(event: EventBridgeEvent, context: LambdaContext) -> dict:
    settings = get_settings()
    pricing = client("pricing", pricing_endpoint_region(settings.region))
    return refresh_prices(settings, RunStore(settings.runs_table), pricing).model_dump()
