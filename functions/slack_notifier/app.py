"""SNS -> Slack: render each notification as Block Kit and POST it to the webhook (URL from Secrets Manager).

Raising after the bounded retries is deliberate: Lambda retries the async invocation, then the DLQ keeps it.
"""

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.data_classes import SNSEvent, event_source
from aws_lambda_powertools.utilities.typing import LambdaContext
from yoloops_core.config import ConfigError, get_settings
from yoloops_core.slack import deliver, get_webhook_url

logger = Logger()


@logger.inject_lambda_context(clear_state=True)
@event_source(data_class=SNSEvent)
def lambda_handler(event: SNSEvent, context: LambdaContext) -> dict:
    settings = get_settings()
    if not settings.slack_webhook_secret_arn:
        raise ConfigError("SLACK_WEBHOOK_SECRET_ARN is not set")
    url = get_webhook_url(settings.slack_webhook_secret_arn)
    delivered = [deliver(record.sns.message, url) for record in event.records]
    return {"delivered": len(delivered)}
