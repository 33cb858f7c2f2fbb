"""SQS batch of S3 ObjectCreated events under datasets/ (and the trigger's own delayed checks) ->
upload sessions -> one workflow run per new upload. Partial batch failures go back to the queue."""

from aws_lambda_powertools import Logger
from yoloops_core.upload_aws import aws_deps
from yoloops_core.uploads import handle_batch

logger = Logger()


@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event, context):
    return handle_batch(event, aws_deps(context))
