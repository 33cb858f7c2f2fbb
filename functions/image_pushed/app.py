"""EventBridge `ECR Image Action` (PUSH of the stack's repository): hand back the parked image waits."""

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext
from yoloops_core import aws
from yoloops_core.config import get_settings
from yoloops_core.image_wait import EcrImageAction, ImageWaits, on_image_pushed
from yoloops_core.models import parse_model

logger = Logger()


@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    settings = get_settings()
    pushed = parse_model(EcrImageAction, event, "ECR Image Action event")
    return on_image_pushed(pushed, waits=ImageWaits(settings.runs_table), sfn=aws.client("stepfunctions"))
