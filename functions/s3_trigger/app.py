"""S3 ObjectCreated (datasets/**/manifest.json, datasets/**/*.zip) -> one workflow run per dataset version."""

from aws_lambda_powertools import Logger
from yoloops_core.aws import client
from yoloops_core.config import ConfigError, get_settings
from yoloops_core.s3_trigger import DynamoVersionStore, handle_s3_event

logger = Logger()


@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event, context):
    settings = get_settings()
    if not settings.state_machine_arn:
        raise ConfigError("STATE_MACHINE_ARN is not set")
    outcomes = handle_s3_event(
        event,
        starter=client("stepfunctions"),
        state_machine_arn=settings.state_machine_arn,
        bucket_filter=settings.artifacts_bucket,
        store=DynamoVersionStore(settings.runs_table, client("dynamodb")),
        publisher=client("sns"),
        topic_arn=settings.notifications_topic_arn,
    )
    return {"outcomes": [o.model_dump(exclude_none=True) for o in outcomes]}
