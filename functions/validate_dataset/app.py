"""ValidateDataset step: parse the execution input, create the run record, validate the dataset."""

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext
from yoloops_core.aws import client
from yoloops_core.config import get_settings
from yoloops_core.models import parse_model
from yoloops_core.steps import ValidateDatasetEvent, validate_dataset
from yoloops_core.store import RunStore

logger = Logger()


# The run id is the correlation id of every log line (docs/architecture.md "Logs").
@logger.inject_lambda_context(clear_state=True, correlation_id_path="run_id")
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    settings = get_settings()
    step = parse_model(ValidateDatasetEvent, event, "ValidateDataset input")
    logger.append_keys(run_id=step.run_id)
    return validate_dataset(step, settings=settings, store=RunStore(settings.runs_table), s3=client("s3"),
                            ecr=client("ecr"))
