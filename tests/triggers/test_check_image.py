"""CheckImage step: polls ECR for the release tag, bounded, with a clear failure."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from types import SimpleNamespace

import boto3
import pytest
from gh_helpers import load_fixture, load_handler
from moto import mock_aws
from yoloops_core.images import ImageNotFound, check_image, repository_name
from yoloops_core.models import InvalidInput

REPO_URI = "123456789012.dkr.ecr.us-east-1.amazonaws.com/yoloops-train"
CONTEXT = SimpleNamespace(function_name="CheckImageFunction", memory_limit_in_mb=128,
                          invoked_function_arn="arn:aws:lambda:us-east-1:123456789012:function:ci",
                          aws_request_id="req-2")


class NotFound(Exception):
    response = {"Error": {"Code": "ImageNotFoundException", "Message": "not found"}}


class FakeEcr:
    def __init__(self, tags=()):
        self.tags = set(tags)
        self.calls = []

    def describe_images(self, **kwargs):
        self.calls.append(kwargs)
        tag = kwargs["imageIds"][0]["imageTag"]
        if tag not in self.tags:
            raise NotFound()
        return {"imageDetails": [{"imageTags": [tag], "imageDigest": "sha256:" + "a" * 64}]}


def test_image_present_is_ready_with_release_tagged_uri():
    ecr = FakeEcr({"v1.4.0"})
    out = check_image(load_fixture("stepfn_check_image_first_poll.json"), ecr=ecr,
                      repository_uri=REPO_URI, max_polls=20)
    assert out == {"ready": True, "polls": 1, "image_uri": f"{REPO_URI}@sha256:{'a' * 64}",
                   "tag_uri": f"{REPO_URI}:v1.4.0"}
    assert ecr.calls == [{"repositoryName": "yoloops-train", "imageIds": [{"imageTag": "v1.4.0"}]}]


def test_missing_image_is_not_ready_and_counts_the_poll():
    out = check_image(load_fixture("stepfn_check_image_first_poll.json"), ecr=FakeEcr(),
                      repository_uri=REPO_URI, max_polls=20)
    assert out == {"ready": False, "polls": 1, "image_uri": f"{REPO_URI}:v1.4.0"}


def test_polling_loop_until_the_image_is_pushed():
    ecr = FakeEcr()
    state = load_fixture("stepfn_check_image_first_poll.json")
    for _ in range(3):
        state["image"] = check_image(state, ecr=ecr, repository_uri=REPO_URI, max_polls=5)
        assert state["image"]["ready"] is False
    ecr.tags.add("v1.4.0")
    state["image"] = check_image(state, ecr=ecr, repository_uri=REPO_URI, max_polls=5)
    assert state["image"] == {"ready": True, "polls": 4, "image_uri": f"{REPO_URI}@sha256:{'a' * 64}",
                              "tag_uri": f"{REPO_URI}:v1.4.0"}


def test_last_poll_raises_image_not_found_naming_repo_tag_and_wait():
    now = datetime(2026, 11, 28, 9, 25, 45, tzinfo=UTC)  # 600 s after the fixture's started_at
    with pytest.raises(ImageNotFound) as err:
        check_image(load_fixture("stepfn_check_image_last_poll.json"), ecr=FakeEcr(),
                    repository_uri=REPO_URI, max_polls=20, now=now)
    message = str(err.value)
    assert "yoloops-train:v1.4.0 never appeared" in message
    assert "after 20 checks" in message and "600 s" in message and "IMAGE_MAX_POLLS=20" in message


def test_other_ecr_errors_raise_for_the_catch():
    class NoRepo(Exception):
        response = {"Error": {"Code": "RepositoryNotFoundException"}}

    class Broken:
        def describe_images(self, **kwargs):
            raise NoRepo()

    with pytest.raises(NoRepo):
        check_image(load_fixture("stepfn_check_image_first_poll.json"), ecr=Broken(),
                    repository_uri=REPO_URI, max_polls=20)


def test_repository_falls_back_to_the_run_image_uri():
    ecr = FakeEcr({"v1.4.0"})
    out = check_image(load_fixture("stepfn_check_image_first_poll.json"), ecr=ecr, repository_uri="", max_polls=3)
    assert out["image_uri"] == f"{REPO_URI}@sha256:{'a' * 64}" and ecr.calls[0]["repositoryName"] == "yoloops-train"


@pytest.mark.parametrize(("uri", "name"), [
    (REPO_URI, "yoloops-train"),
    ("123456789012.dkr.ecr.us-east-1.amazonaws.com/team/yolo", "team/yolo"),
    ("localhost:5000/yolo:latest", "yolo"),
    ("yolo", "yolo"),
])
def test_repository_name(uri, name):
    assert repository_name(uri) == name


def test_malformed_input_and_missing_tag_are_invalid_input():
    with pytest.raises(InvalidInput, match="run"):
        check_image({"image": {}}, ecr=FakeEcr(), repository_uri=REPO_URI, max_polls=3)
    event = load_fixture("stepfn_check_image_first_poll.json")
    event["run"]["image_tag"] = None
    with pytest.raises(InvalidInput, match="no image_tag"):
        check_image(event, ecr=FakeEcr(), repository_uri=REPO_URI, max_polls=3)


def test_handler_on_moto_ecr(monkeypatch):
    with mock_aws():
        ecr = boto3.client("ecr", region_name="us-east-1")
        ecr.create_repository(repositoryName="yoloops-train")
        for key, value in {"ARTIFACTS_BUCKET": "a", "RUNS_TABLE": "runs", "NOTIFICATIONS_TOPIC_ARN": "arn:t",
                           "ECR_REPOSITORY": REPO_URI, "IMAGE_MAX_POLLS": "2"}.items():
            monkeypatch.setenv(key, value)
        handler = load_handler("check_image")
        event = load_fixture("stepfn_check_image_first_poll.json")
        first = handler(event, CONTEXT)
        assert first == {"ready": False, "polls": 1, "image_uri": f"{REPO_URI}:v1.4.0"}
        with pytest.raises(ImageNotFound, match="after 2 checks"):
            handler({**event, "image": first}, CONTEXT)
        manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                               "config": {"digest": "sha256:" + "b" * 64, "size": 1,
                                          "mediaType": "application/vnd.docker.container.image.v1+json"},
                               "layers": []})
        ecr.put_image(repositoryName="yoloops-train", imageManifest=manifest, imageTag="v1.4.0")
        ready = handler({**event, "image": first}, CONTEXT)
        digest = ecr.describe_images(repositoryName="yoloops-train",
                                     imageIds=[{"imageTag": "v1.4.0"}])["imageDetails"][0]["imageDigest"]
        # Pinned: the digest ECR holds for the tag, so every attempt trains the same image.
        assert ready["ready"] is True and ready["image_uri"] == f"{REPO_URI}@{digest}"
