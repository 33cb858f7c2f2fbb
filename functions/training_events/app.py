"""EventBridge "SageMaker Training Job State Change": record transitions, notify spot interruptions once."""

from dataclasses import asdict

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext
from yoloops_core.training_events import default_deps, handle_training_event

logger = Logger()


@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    # The domain parses the event (TrainingJobStateChange) and answers with a typed outcome.
    return asdict(handle_training_event(event, default_deps()))
