"""GitHub release webhook (Lambda Function URL, AuthType NONE; authenticated by HMAC in the domain)."""

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext
from yoloops_core.github import default_deps, handle_webhook

logger = Logger()


@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    # The raw event goes to the domain: the signature must be checked on the exact bytes received.
    deps = default_deps()
    deps.register_context(context)
    return handle_webhook(event, deps).to_lambda()
