"""SNS -> the GitHub release of a release-triggered run: verdict, metric table and cost into its body, the
model bundle as assets (yoloops_core.release_writeback). Nothing happens without a GitHub token.

Raising (GitHub unreachable, a 5xx) is deliberate: Lambda retries the async invocation, then the DLQ keeps it.
"""

import json

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.data_classes import SNSEvent, event_source
from aws_lambda_powertools.utilities.typing import LambdaContext
from yoloops_core.models import parse_model
from yoloops_core.notifications import Notification
from yoloops_core.release_writeback import default_deps, write_back

logger = Logger()


@logger.inject_lambda_context(clear_state=True)
@event_source(data_class=SNSEvent)
def lambda_handler(event: SNSEvent, context: LambdaContext) -> dict:
    deps = default_deps()
    results = []
    for record in event.records:
        note = parse_model(Notification, json.loads(record.sns.message), "notification")
        logger.set_correlation_id(note.run_id)
        results.append(write_back(note, deps))
    return {"results": results}
