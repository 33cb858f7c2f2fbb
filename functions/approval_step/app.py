"""AwaitTrainApproval / AwaitPromoteApproval (waitForTaskToken: park the token, ask the team) and
TrainNotApproved / PromotionNotApproved (record who or what decided)."""

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext
from yoloops_core.approval import ApprovalStepEvent, ApprovalStore, approval_step
from yoloops_core.aws import client
from yoloops_core.config import get_settings
from yoloops_core.models import parse_model
from yoloops_core.store import RunStore

logger = Logger()


# The run id is the correlation id of every log line (docs/architecture.md "Logs").
@logger.inject_lambda_context(clear_state=True, correlation_id_path="run.run_id")
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    settings = get_settings()
    step = parse_model(ApprovalStepEvent, event, "approval step input")
    return approval_step(step, settings=settings, approvals=ApprovalStore(settings.runs_table),
                         store=RunStore(settings.runs_table), sns=client("sns"))
