"""WaitForImage parks its task token; ECR's push event hands it back (the image wait ends on the push)."""

from __future__ import annotations

from types import SimpleNamespace

import boto3
import pytest
from gh_helpers import load_fixture, load_handler
from moto import mock_aws
from support import create_runs_table
from yoloops_core.image_wait import EcrImageAction, ImageWaits, on_image_pushed, park_image_wait
from yoloops_core.models import InvalidInput, parse_model

REPO_URI = "123456789012.dkr.ecr.us-east-1.amazonaws.com/yoloops-train"
CONTEXT = SimpleNamespace(function_name="ImagePushedFunction", memory_limit_in_mb=128,
                          invoked_function_arn="arn:aws:lambda:us-east-1:123456789012:function:ip",
                          aws_request_id="req-3")


class TokenError(Exception):
    def __init__(self, code):
        self.response = {"Error": {"Code": code, "Message": code}}


class FakeSfn:
    """SendTaskSuccess; tokens in `ended` answer as Step Functions does for a wait that is over."""

    def __init__(self, ended=()):
        self.ended = dict(ended)
        self.sent = []

    def send_task_success(self, taskToken, output):
        if taskToken in self.ended:
            raise TokenError(self.ended[taskToken])
        self.sent.append((taskToken, output))
        return {}


class FakeEcr:
    def __init__(self, tags=()):
        self.tags = set(tags)

    def describe_images(self, repositoryName, imageIds):
        if imageIds[0]["imageTag"] not in self.tags:
            raise TokenError("ImageNotFoundException")
        return {"imageDetails": [{"imageDigest": "sha256:" + "c" * 64}]}


@pytest.fixture
def waits():
    with mock_aws():
        ddb = boto3.client("dynamodb", region_name="us-east-1")
        yield ImageWaits(create_runs_table(ddb), ddb=ddb)


def _push(**detail):
    event = load_fixture("ecr_image_push.json")
    event["detail"].update(detail)
    return parse_model(EcrImageAction, event, "ECR Image Action event")


def test_parked_wait_is_handed_back_by_the_push_of_its_tag(waits):
    sfn = FakeSfn()
    out = park_image_wait(load_fixture("stepfn_image_wait.json"), waits=waits, ecr=FakeEcr(), sfn=sfn,
                          repository_uri=REPO_URI)
    assert out == {"parked": True, "image_present": False} and sfn.sent == []
    run_id = load_fixture("stepfn_image_wait.json")["run"]["run_id"]
    assert waits.parked("yoloops-train", "v1.4.0") == [(run_id, load_fixture("stepfn_image_wait.json")["task_token"])]
    # Another tag's push, a failed push and a delete wake nothing.
    for other in (_push(**{"image-tag": "v9.9.9"}), _push(result="FAILURE"), _push(**{"action-type": "DELETE"})):
        assert on_image_pushed(other, waits=waits, sfn=sfn)["woken"] == []
    assert sfn.sent == []
    woke = on_image_pushed(_push(), waits=waits, sfn=sfn)
    assert woke == {"woken": [run_id], "stale": []}
    ((token, output),) = sfn.sent
    assert token == load_fixture("stepfn_image_wait.json")["task_token"] and '"ecr push"' in output
    # Used once: a redelivered event finds nothing left.
    assert waits.parked("yoloops-train", "v1.4.0") == []
    assert on_image_pushed(_push(), waits=waits, sfn=sfn)["woken"] == []


def test_a_push_between_the_last_poll_and_the_parking_still_ends_the_wait(waits):
    sfn = FakeSfn()
    out = park_image_wait(load_fixture("stepfn_image_wait.json"), waits=waits, ecr=FakeEcr({"v1.4.0"}), sfn=sfn,
                          repository_uri=REPO_URI)
    assert out == {"parked": False, "image_present": True}
    assert len(sfn.sent) == 1 and waits.parked("yoloops-train", "v1.4.0") == []


def test_a_wait_that_already_timed_out_is_cleared_not_retried(waits):
    event = load_fixture("stepfn_image_wait.json")
    park_image_wait(event, waits=waits, ecr=FakeEcr(), sfn=FakeSfn(), repository_uri=REPO_URI)
    sfn = FakeSfn({event["task_token"]: "TaskTimedOut"})
    assert on_image_pushed(_push(), waits=waits, sfn=sfn) == {"woken": [], "stale": [event["run"]["run_id"]]}
    assert waits.parked("yoloops-train", "v1.4.0") == []
    # Any other Step Functions error raises, so EventBridge's retries and the DLQ see it.
    park_image_wait(event, waits=waits, ecr=FakeEcr(), sfn=FakeSfn(), repository_uri=REPO_URI)
    with pytest.raises(TokenError):
        on_image_pushed(_push(), waits=waits, sfn=FakeSfn({event["task_token"]: "ThrottlingException"}))
    assert waits.parked("yoloops-train", "v1.4.0") != []  # kept for the retry


def test_bad_input_names_the_field():
    with pytest.raises(InvalidInput, match="task_token"):
        park_image_wait({k: v for k, v in load_fixture("stepfn_image_wait.json").items() if k != "task_token"},
                        waits=None, ecr=FakeEcr(), sfn=FakeSfn(), repository_uri=REPO_URI)
    event = load_fixture("ecr_image_push.json")
    del event["detail"]["repository-name"]
    with pytest.raises(InvalidInput, match="repository-name"):
        parse_model(EcrImageAction, event, "ECR Image Action event")


def test_handlers_on_moto(monkeypatch):
    """Both handlers with the fixtures `sam local invoke -e` uses, against moto (DynamoDB, ECR, Step Functions).

    Step Functions runs as the ASL executor (pinned: a local stack earlier in the process turns it on for
    the whole process), which answers SendTaskSuccess for a token no execution issued with InvalidToken,
    as AWS does: the fixture's token is such a token, so the push clears it as a wait that is over."""
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        ddb = boto3.client("dynamodb", region_name="us-east-1")
        table = create_runs_table(ddb)
        boto3.client("ecr", region_name="us-east-1").create_repository(repositoryName="yoloops-train")
        for key, value in {"ARTIFACTS_BUCKET": "a", "RUNS_TABLE": table, "NOTIFICATIONS_TOPIC_ARN": "arn:t",
                           "ECR_REPOSITORY": REPO_URI, "AWS_DEFAULT_REGION": "us-east-1"}.items():
            monkeypatch.setenv(key, value)
        from yoloops_core.aws import reset_clients

        reset_clients()
        assert load_handler("image_wait")(load_fixture("stepfn_image_wait.json"), CONTEXT)["parked"] is True
        out = load_handler("image_pushed")(load_fixture("ecr_image_push.json"), CONTEXT)
        assert out == {"woken": [], "stale": [load_fixture("stepfn_image_wait.json")["run"]["run_id"]]}
        assert ImageWaits(table, ddb=ddb).parked("yoloops-train", "v1.4.0") == []
        reset_clients()
