"""Ending the image wait on the push: a release run whose image CI is still building waits in
`WaitForImage`, a `lambda:invoke.waitForTaskToken` task whose timeout is the poll interval. The task parks
its token under the image's `<repository>:<tag>` in the RunsTable; ECR's "ECR Image Action" PUSH event
for that tag (an EventBridge rule) hands every parked token back, so CheckImage runs seconds after the
push instead of at the next poll. Without the event (another registry, a lost event) the timeout still
polls: the push only makes the wait shorter, never required.

Layout (docs/architecture.md): `pk=IMAGEWAIT#<repository>:<tag>`, `sk=RUN#<run id>`, `task_token`,
`parked_at`. A token is used once: it is deleted when handed back, and a stale one (its wait already
timed out) is deleted by the next push of that tag.
"""

from __future__ import annotations

import json
from typing import Any, Literal, Protocol

from aws_lambda_powertools import Logger
from pydantic import BaseModel, ConfigDict, Field

from yoloops_core.images import ImageDescriber, ImageState, image_present, repository_name, run_repository_uri
from yoloops_core.models import InvalidInput, RunContext, iso, parse_model, utcnow
from yoloops_core.store import DynamoTable, run_pk

logger = Logger(child=True)

# SendTaskSuccess errors that mean "this wait is over already" (timed out, aborted, answered by the
# other path): nothing to hand back, and no reason to retry the event.
_ENDED_TOKEN_ERRORS = {"TaskTimedOut", "TaskDoesNotExist", "InvalidToken"}


def wait_pk(repository: str, tag: str) -> str:
    return f"IMAGEWAIT#{repository}:{tag}"


class TaskCallbacks(Protocol):
    def send_task_success(self, **kwargs: Any) -> dict[str, Any]: ...


class ImageWaitInput(BaseModel):
    """`WaitForImage`'s payload: the run, its image state and `$$.Task.Token`."""

    model_config = ConfigDict(extra="ignore")

    run: RunContext
    image: ImageState = Field(default_factory=ImageState)
    task_token: str = Field(min_length=1, max_length=2048)


class EcrImageActionDetail(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    result: str
    action_type: str = Field(alias="action-type")
    repository_name: str = Field(alias="repository-name", min_length=1)
    image_tag: str | None = Field(None, alias="image-tag")
    image_digest: str | None = Field(None, alias="image-digest")


class EcrImageAction(BaseModel):
    """EventBridge `ECR Image Action` (source aws.ecr)."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    source: Literal["aws.ecr"]
    detail_type: Literal["ECR Image Action"] = Field(alias="detail-type")
    detail: EcrImageActionDetail


class ImageWaits(DynamoTable):
    """Parked WaitForImage task tokens, by image tag."""

    def park(self, repository: str, tag: str, run_id: str, token: str) -> None:
        # One item per run: a later wait of the same run replaces its earlier (used up) token.
        self.ddb.put_item(TableName=self.table, Item={
            "pk": {"S": wait_pk(repository, tag)}, "sk": {"S": run_pk(run_id)},
            "run_id": {"S": run_id}, "task_token": {"S": token}, "parked_at": {"S": iso(utcnow())}})

    def parked(self, repository: str, tag: str) -> list[tuple[str, str]]:
        """(run id, token) of every wait parked under the tag."""
        found, start = [], None
        while True:
            kwargs: dict[str, Any] = {"TableName": self.table, "KeyConditionExpression": "pk = :pk",
                                      "ExpressionAttributeValues": {":pk": {"S": wait_pk(repository, tag)}}}
            if start:
                kwargs["ExclusiveStartKey"] = start
            page = self.ddb.query(**kwargs)
            found += [(i["run_id"]["S"], i["task_token"]["S"]) for i in page.get("Items", [])]
            start = page.get("LastEvaluatedKey")
            if not start:
                return found

    def forget(self, repository: str, tag: str, run_id: str, token: str) -> None:
        """Delete the parked token, unless the run has parked a newer one meanwhile."""
        try:
            self.ddb.delete_item(TableName=self.table, Key={"pk": {"S": wait_pk(repository, tag)},
                                                            "sk": {"S": run_pk(run_id)}},
                                 ConditionExpression="task_token = :t",
                                 ExpressionAttributeValues={":t": {"S": token}})
        except Exception as exc:
            if _error_code(exc) != "ConditionalCheckFailedException":
                raise


def _error_code(exc: Exception) -> str:
    return str(getattr(exc, "response", {}).get("Error", {}).get("Code") or "")


def _hand_back(sfn: TaskCallbacks, token: str, output: dict[str, Any]) -> bool:
    """SendTaskSuccess; False when the wait had already ended."""
    try:
        sfn.send_task_success(taskToken=token, output=json.dumps(output))
    except Exception as exc:
        if _error_code(exc) in _ENDED_TOKEN_ERRORS:
            return False
        raise
    return True


def park_image_wait(payload: Any, *, waits: ImageWaits, ecr: ImageDescriber, sfn: TaskCallbacks,
                    repository_uri: str) -> dict[str, Any]:
    """WaitForImage: park the token, then look once more, so a push between CheckImage's look and the
    parking (whose event found no token) still ends the wait now."""
    data = parse_model(ImageWaitInput, payload, "WaitForImage input")
    run = data.run
    if not run.image_tag:
        raise InvalidInput(f"run {run.run_id} has no image_tag to wait for")
    repo = repository_name(run_repository_uri(run, repository_uri))
    waits.park(repo, run.image_tag, run.run_id, data.task_token)
    log = {"run_id": run.run_id, "repository": repo, "tag": run.image_tag, "polls": data.image.polls}
    if image_present(ecr, repo, run.image_tag):
        handed = _hand_back(sfn, data.task_token, {"woken_by": "image already pushed"})
        waits.forget(repo, run.image_tag, run.run_id, data.task_token)
        logger.info("image arrived while parking the wait", extra=log | {"handed_back": handed})
        return {"parked": False, "image_present": True}
    logger.info("waiting for the image push (or the next poll)",
                extra=log | {"timeout_s": run.image_poll_seconds})
    return {"parked": True, "image_present": False}


def on_image_pushed(event: EcrImageAction, *, waits: ImageWaits, sfn: TaskCallbacks) -> dict[str, Any]:
    """ECR Image Action: a successful PUSH of a tag ends every wait parked under it."""
    d = event.detail
    log = {"repository": d.repository_name, "tag": d.image_tag, "action": d.action_type, "result": d.result}
    if d.action_type != "PUSH" or d.result != "SUCCESS" or not d.image_tag:
        logger.info("ECR event is not a successful tagged push; nothing to wake", extra=log)
        return {"woken": [], "stale": []}
    woken, stale = [], []
    for run_id, token in waits.parked(d.repository_name, d.image_tag):
        output = {"woken_by": "ecr push", "image_digest": d.image_digest}
        handed = _hand_back(sfn, token, output)
        (woken if handed else stale).append(run_id)
        waits.forget(d.repository_name, d.image_tag, run_id, token)
        logger.info("image wait handed back" if handed else "image wait had already ended",
                    extra=log | {"run_id": run_id})
    logger.info("image pushed", extra=log | {"woken": woken, "stale": stale})
    return {"woken": woken, "stale": stale}
