"""ASL `WaitForImage` (lambda:invoke.waitForTaskToken): park the task token until the image is pushed."""

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext
from yoloops_core import aws
from yoloops_core.config import get_settings
from yoloops_core.image_wait import ImageWaits, park_image_wait

logger = Logger()


# The run id is the correlation id of every log line (docs/architecture.md "Logs").
@logger.inject_lambda_context(clear_state=True, correlation_id_path="run.run_id")
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    settings = get_settings()
    # park_image_wait validates the event into ImageWaitInput (InvalidInput names the field).
    return park_image_wait(event, waits=ImageWaits(settings.runs_table), ecr=aws.client("ecr"),
                           sfn=aws.client("stepfunctions"), repository_uri=settings.ecr_repository)
