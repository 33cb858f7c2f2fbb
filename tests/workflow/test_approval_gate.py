"""RequireApproval on the local stack: the real ASL waits in waitForTaskToken; a person decides with a signed
Slack click (curl to the function URL) or `yoloops approve|reject`; a timeout ends the run; forged or
replayed clicks get 401 and change nothing."""

from __future__ import annotations

import json
import shutil
import subprocess
import time

import pytest
from typer.testing import CliRunner

from yoloops.cli import app
from yoloops.local import complete
from yoloops.local.slack_sign import block_actions, sign

GOOD = {"mAP50": 0.81, "mAP50-95": 0.62, "precision": 0.8, "recall": 0.75}
BETTER = {"mAP50": 0.90, "mAP50-95": 0.74, "precision": 0.9, "recall": 0.85}
runner = CliRunner()


def _approval(wf, run_id, stage):
    from yoloops_core.approval import ApprovalStore

    return ApprovalStore(wf.table, ddb=wf.ddb).get(run_id, stage)


def _wait_pending(wf, arn, run_id, stage, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        item = _approval(wf, run_id, stage)
        if item and item.get("status") == "pending":
            return item
        status = wf.sfn.describe_execution(executionArn=arn)["status"]
        assert status == "RUNNING", (status, wf.history(arn)[-3:])
        time.sleep(0.1)
    raise AssertionError(f"{run_id}: no pending {stage} approval after {timeout}s")


def _curl(url: str, body: str, headers: dict[str, str]) -> tuple[int, str]:
    curl = shutil.which("curl")
    if curl is None:
        pytest.fail("curl is needed: the test clicks the button the way Slack delivers it, over HTTP")
    args = [curl, "-s", "-o", "-", "-w", "\n%{http_code}", "-X", "POST", url, "--data-binary", body]
    for k, v in headers.items():
        args += ["-H", f"{k}: {v}"]
    out = subprocess.run(args, capture_output=True, text=True, timeout=30, check=True).stdout
    text, _, code = out.rpartition("\n")
    return int(code), text


def _click(wf, run_id, stage, approve, secret=None, timestamp=None, user="alice"):
    body = block_actions(run_id, stage, approve, user=user)
    headers = sign(body, secret or wf.stack.slack_signing_secret, timestamp)
    return _curl(wf.stack.outputs["SlackInteractionsUrl"], body, headers)


def _cli(wf, *args):
    return runner.invoke(app, ["--local", str(wf.stack.workdir), *args], catch_exceptions=False)


def test_train_waits_with_its_reservation_held_and_a_signed_slack_click_approves_it(wf):
    wf.reset(RequireApproval="train")
    wf.upload_dataset("shapes", "v1")
    wf.training.then(complete(GOOD))
    arn = wf.start("shapes", "v1")
    run_id = wf.run_id("shapes", "v1")
    _wait_pending(wf, arn, run_id, "train")

    # Waiting: no training job, the worst case is reserved, and the request shows it with the buttons.
    assert wf.training.requests == []
    record = wf.run_record(run_id)
    assert record["status"] == "AWAITING_APPROVAL"
    [held] = wf.ledger().reservations(run_id)
    assert held.state == "reserved" and held.amount_usd > 0
    request = json.loads(wf.wait_for_slack(run_id, "Approval needed", "yoloops_approve"))
    assert f"${held.amount_usd:.2f}" in json.dumps(request)

    # A forged signature and a correctly signed but 6-minute-old (replayed) click: 401, nothing changes.
    assert _click(wf, run_id, "train", True, secret="not-the-signing-secret")[0] == 401
    assert _click(wf, run_id, "train", True, timestamp=int(time.time()) - 360)[0] == 401
    assert _approval(wf, run_id, "train")["status"] == "pending"
    assert wf.sfn.describe_execution(executionArn=arn)["status"] == "RUNNING"
    assert wf.training.requests == []

    status, body = _click(wf, run_id, "train", True)
    assert status == 200, body
    result = wf.wait(arn)
    assert result["status"] == "SUCCEEDED", wf.history(arn)[-3:]
    states = wf.states_entered(arn)
    assert states[states.index("IsAdmitted"):states.index("Evaluate")] == ["IsAdmitted", "AwaitTrainApproval", "Train"]
    decided = _approval(wf, run_id, "train")
    assert decided["status"] == "approved" and decided["decided_by"] == "@alice (U0LOCAL1) in Slack"
    assert wf.run_record(run_id)["status"] == "PROMOTED"
    wf.wait_for_slack(run_id, "Approved", "approved by @alice")
    # A second click (or a replay within the 5 minutes) finds it decided: nothing changes.
    status, body = _click(wf, run_id, "train", False, user="mallory")
    assert status == 200 and "has no approval waiting (train approved by @alice" in body
    assert _approval(wf, run_id, "train")["status"] == "approved"


def test_reject_from_the_cli_ends_the_run_and_releases_its_reservation(wf):
    wf.reset(RequireApproval="both")
    wf.upload_dataset("shapes", "v1")
    arn = wf.start("shapes", "v1")
    run_id = wf.run_id("shapes", "v1")
    _wait_pending(wf, arn, run_id, "train")

    result = _cli(wf, "reject", run_id, "--reason", "too expensive this month")
    assert result.exit_code == 0, result.output
    assert "rejected" in result.output
    desc = wf.wait(arn)
    assert desc["status"] == "FAILED"
    assert wf.states_entered(arn)[-4:] == ["AwaitTrainApproval", "TrainNotApproved", "NotifyNotApproved",
                                           "NotApproved"]
    assert wf.training.requests == []  # no job was ever created
    record = wf.run_record(run_id)
    assert record["status"] == "NOT_APPROVED"
    assert "train rejected by cli user" in json.dumps(record) and "too expensive this month" in json.dumps(record)
    [res] = wf.ledger().reservations(run_id)
    assert res.state == "settled" and res.actual_usd == 0
    assert wf.ledger().totals(record["month"]).reserved_usd == pytest.approx(0.0)
    wf.wait_for_slack(run_id, "Run not approved", "train rejected by cli user", "too expensive this month")
    # Nothing is waiting any more.
    again = _cli(wf, "approve", run_id)
    assert again.exit_code == 1 and "no approval waiting" in again.output


def test_an_approval_nobody_answers_times_out_and_says_so(wf):
    wf.reset(RequireApproval="train", ApprovalTimeoutHours="0.0006")  # 2.16 s -> 3 s
    wf.upload_dataset("shapes", "v1")
    arn = wf.start("shapes", "v1")
    run_id = wf.run_id("shapes", "v1")
    desc = wf.wait(arn, timeout=60)
    assert desc["status"] == "FAILED"
    assert "TrainNotApproved" in wf.states_entered(arn)
    assert wf.training.requests == []
    assert wf.run_record(run_id)["status"] == "NOT_APPROVED"
    assert _approval(wf, run_id, "train")["status"] == "timed_out"
    [res] = wf.ledger().reservations(run_id)
    assert res.state == "settled" and res.actual_usd == 0
    wf.wait_for_slack(run_id, "Run not approved", "train approval timed out")
    # A click after the timeout changes nothing.
    status, body = _click(wf, run_id, "train", True)
    assert status == 200 and "timed_out by timeout" in body


def test_promotion_rejected_in_slack_keeps_the_champion_with_who_decided(wf):
    wf.reset(RequireApproval="promote")
    wf.upload_dataset("shapes", "v1")
    wf.training.then(complete(BETTER))
    arn = wf.start("shapes", "v1")
    run_id = wf.run_id("shapes", "v1")
    _wait_pending(wf, arn, run_id, "promote")
    wf.wait_for_slack(run_id, "Approval needed to promote", "0.7400")

    status, body = _click(wf, run_id, "promote", False, user="bob")
    assert status == 200, body
    assert wf.wait(arn)["status"] == "SUCCEEDED"
    assert "PromotionNotApproved" in wf.states_entered(arn) and "Promote" not in wf.states_entered(arn)
    assert wf.champion("shapes") is None
    record = wf.run_record(run_id)
    assert record["status"] == "KEPT"
    wf.wait_for_slack(run_id, "Champion kept", "promote rejected by @bob")
