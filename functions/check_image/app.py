"""ASL `CheckImage`: is the release's image tag in ECR yet? Raises ImageNotFound after IMAGE_MAX_POLLS."""

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext
from yoloops_core import aws
from yoloops_core.config import get_settings
from yoloops_core.images import check_image

logger = Logger()


# The run id is the correlation id of every log line (docs/architecture.md "Logs").
@logger.inject_lambda_context(clear_state=True, correlation_id_path="run.run_id")
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    settings = get_settings()
    # check_image validates the event into CheckImageInput (InvalidInput names the field).
    return check_image(event, ecr=aws.client("ecr"), repository_uri=settings.ecr_repository,
                       max_polls=settings.image_max_polls)
