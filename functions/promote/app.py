"""Promote step: store the model bundle, take the champion by conditional write, publish champion/."""

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext
from yoloops_core import registry
from yoloops_core.aws import client
from yoloops_core.config import get_settings
from yoloops_core.models import parse_model
from yoloops_core.promote import PromoteEvent, promote
from yoloops_core.store import RunStore

logger = Logger()


# The run id is the correlation id of every log line (docs/architecture.md "Logs").
@logger.inject_lambda_context(clear_state=True, correlation_id_path="run.run_id")
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    settings = get_settings()
    step = parse_model(PromoteEvent, event, "Promote input")
    logger.append_keys(run_id=step.run.run_id)
    return promote(step, bucket=settings.artifacts_bucket, store=RunStore(settings.runs_table), s3=client("s3"),
                   registry=registry.from_settings(settings))
