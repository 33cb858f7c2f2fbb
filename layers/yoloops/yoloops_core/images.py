"""CheckImage step: a release run trains with the image tagged with the release tag; CI may still be
pushing it when the release is published, so the workflow polls ECR (bounded) before training.

When the tag is there, the step answers with the image's DIGEST (`<repo uri>@sha256:...`), never the
tag: the plan's TrainingImage, so every attempt of the run trains exactly the same code (and the run
record and notifications name it), even if the tag were ever moved."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Protocol

from aws_lambda_powertools import Logger
from pydantic import BaseModel, ConfigDict, Field

from yoloops_core.models import InvalidInput, RunContext, parse_model, utcnow

logger = Logger(child=True)


class ImageNotFound(Exception):
    """The release's image tag never appeared in ECR within IMAGE_MAX_POLLS checks."""


class ImageState(BaseModel):
    """`$.image` in the state machine."""

    model_config = ConfigDict(extra="ignore")

    ready: bool = False
    polls: int = Field(0, ge=0)
    image_uri: str | None = None


class CheckImageInput(BaseModel):
    model_config = ConfigDict(extra="ignore")

    run: RunContext
    image: ImageState = Field(default_factory=ImageState)


class ImageDescriber(Protocol):
    def describe_images(self, **kwargs: Any) -> dict[str, Any]: ...


def repository_name(repository_uri: str) -> str:
    """`<account>.dkr.ecr.<region>.amazonaws.com/<name>` (or a bare name) -> `<name>`."""
    name = repository_uri.split("/", 1)[1] if "/" in repository_uri else repository_uri
    name = name.split("@", 1)[0]
    # A URI that already carries a tag: drop it (the colon after the last slash).
    return name.rsplit(":", 1)[0] if ":" in name.rsplit("/", 1)[-1] else name


def run_repository_uri(run: RunContext, configured: str) -> str:
    """The repository the run's image tag is pushed to: the stack's, else the one in its image URI."""
    if configured:
        return configured.rstrip("/")
    # Fall back to the repository part of the resolved image URI (`<repo uri>:<tag>`).
    base = run.image_uri.split("@", 1)[0]
    last = base.rsplit("/", 1)
    return base.rsplit(":", 1)[0] if ":" in last[-1] else base


def _elapsed_s(run: RunContext, now: datetime) -> int | None:
    try:
        started = datetime.fromisoformat(run.started_at.replace("Z", "+00:00"))
    except ValueError:
        return None
    return max(0, int((now - started).total_seconds()))


def check_image(payload: Any, *, ecr: ImageDescriber, repository_uri: str, max_polls: int,
                now: datetime | None = None) -> dict[str, Any]:
    """One poll: `{ready, polls, image_uri}`; raises ImageNotFound on the last failed poll."""
    data = parse_model(CheckImageInput, payload, "CheckImage input")
    run, state = data.run, data.image
    if not run.image_tag:
        raise InvalidInput(f"run {run.run_id} has no image_tag to wait for")
    repo_uri = run_repository_uri(run, repository_uri)
    repo = repository_name(repo_uri)
    image_uri = f"{repo_uri}:{run.image_tag}"
    log = {"run_id": run.run_id, "repository": repo, "tag": run.image_tag, "polls": state.polls}
    details = _image_details(ecr, repo, run.image_tag)
    if not details:
        polls = state.polls + 1
        if polls >= max_polls:
            elapsed = _elapsed_s(run, now or utcnow())
            waited = (f"{elapsed} s since the run started" if elapsed is not None
                      else f"about {polls * run.image_poll_seconds} s")
            message = (f"image {repo}:{run.image_tag} never appeared in ECR after {polls} checks "
                       f"({waited}, IMAGE_MAX_POLLS={max_polls}); was the image for release "
                       f"{run.image_tag} built and pushed?")
            logger.error("image never appeared", extra=log | {"max_polls": max_polls})
            raise ImageNotFound(message)
        logger.info("image not pushed yet", extra=log | {"polls": polls})
        return {"ready": False, "polls": polls, "image_uri": image_uri}
    digest = _digest(details, run.image_tag)
    pinned = f"{repo_uri}@{digest}"
    logger.info("image ready", extra=log | {"digest": digest, "image_uri": pinned})
    return {"ready": True, "polls": state.polls + 1, "image_uri": pinned, "tag_uri": image_uri}


def _image_details(ecr: ImageDescriber, repository: str, tag: str) -> list[dict[str, Any]]:
    """DescribeImages of one tag; [] when the tag is not there yet."""
    try:
        return ecr.describe_images(repositoryName=repository, imageIds=[{"imageTag": tag}]).get("imageDetails") or []
    except Exception as exc:  # botocore ClientError, matched by code so fakes need no botocore
        if getattr(exc, "response", {}).get("Error", {}).get("Code") != "ImageNotFoundException":
            raise  # missing repository, access denied...: a real error for the Catch
        return []


def image_present(ecr: ImageDescriber, repository: str, tag: str) -> bool:
    return bool(_image_details(ecr, repository, tag))


_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


def _digest(details: list[dict[str, Any]], tag: str) -> str:
    """The digest ECR reports for the tag (DescribeImages by tag returns exactly that image)."""
    digest = str(details[0].get("imageDigest") or "")
    if not _DIGEST.match(digest):
        raise ValueError(f"ECR returned no valid digest for tag {tag} ({digest!r}); cannot pin the image")
    return digest


def pin_image(image_uri: str, stack_repository: str, ecr: ImageDescriber) -> str:
    """`<stack repository>:<tag>` -> `<stack repository>@sha256:...`, so every attempt of a run trains the
    same bytes even if the tag moves. Already pinned URIs pass through; so does an image in another
    registry (TrainingImageUri set by hand), which this stack cannot describe."""
    if "@sha256:" in image_uri:
        return image_uri
    repo_uri, _, tag = image_uri.rpartition(":") if ":" in image_uri.rsplit("/", 1)[-1] else (image_uri, "", "latest")
    if not stack_repository or repo_uri.rstrip("/") != stack_repository.rstrip("/"):
        logger.warning("training image not pinned: not in the stack's repository", extra={"image_uri": image_uri})
        return image_uri
    repo = repository_name(repo_uri)
    found = _image_details(ecr, repo, tag)
    if not found:
        raise ImageNotFound(f"no training image tagged {tag!r} in ECR repository {repo}: build and push it first "
                            f"(README, 'Image'; the container workflow pushes one per release tag), or set "
                            f"TrainingImageTag to a tag that exists")
    return f"{repo_uri}@{_digest(found, tag)}"
