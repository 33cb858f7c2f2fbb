"""SNS -> Slack: a thread per run through the Web API when a bot token and channel are set, else Block Kit
POSTed to the incoming webhook. Secrets come from Secrets Manager (cached).

Raising after the bounded retries is deliberate: Lambda retries the async invocation, then the DLQ keeps it.
"""

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.data_classes import SNSEvent, event_source
from aws_lambda_powertools.utilities.typing import LambdaContext
from yoloops_core.aws import secret
from yoloops_core.config import get_settings
from yoloops_core.logs import run_id_of
from yoloops_core.slack_thread import slack_delivery

logger = Logger()


# The run id is the correlation id of every log line (docs/architecture.md "Logs"); plain-text messages
# (alarms, manual publishes) have none, so it is read from each message rather than by a JMESPath.
@logger.inject_lambda_context(clear_state=True)
@event_source(data_class=SNSEvent)
def lambda_handler(event: SNSEvent, context: LambdaContext) -> dict:
    send = slack_delivery(get_settings(), read_secret=secret)
    delivered = []
    for record in event.records:
        logger.set_correlation_id(run_id_of(record.sns.message))
        delivered.append(send(record.sns.message))
    return {"delivered": len(delivered)}
