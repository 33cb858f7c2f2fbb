"""Slack interactivity (Approve / Reject buttons) behind a public function URL; authenticated by Slack's
v0 request signature in the domain (yoloops_core.slack_interactions), with the signing secret from Secrets Manager."""

import functools

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext
from yoloops_core.approval import ApprovalStore, decide
from yoloops_core.aws import client, secret
from yoloops_core.config import get_settings
from yoloops_core.slack_interactions import handle_interaction
from yoloops_core.store import RunStore

logger = Logger()


@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    s = get_settings()
    decider = functools.partial(decide, approvals=ApprovalStore(s.runs_table), store=RunStore(s.runs_table),
                                sfn=client("stepfunctions"), sns=client("sns"), topic_arn=s.notifications_topic_arn)
    key = secret(s.slack_signing_secret_arn) if s.slack_signing_secret_arn else ""  # empty: every request is 401
    return handle_interaction(event, signing_secret=key,
                              decide=lambda run_id, ok, by, stage: decider(run_id, ok, by, stage=stage)).to_lambda()
