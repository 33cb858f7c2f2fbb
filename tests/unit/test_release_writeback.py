"""yoloops_core.release_writeback with fakes: what is written where, and when nothing is."""

from __future__ import annotations

import io

import pytest
from yoloops_core.github_api import GithubApiError, repo_and_tag, usable_token
from yoloops_core.models import EventType
from yoloops_core.notifications import Notification
from yoloops_core.release_writeback import WritebackDeps, render_section, with_section, write_back

URL = "https://github.com/acme/robot/releases/tag/v1.2.0"


class FakeApi:
    def __init__(self, body="notes"):
        self.release = {"id": 7, "body": body, "upload_url": "https://uploads/x/assets{?name,label}"}
        self.assets_: list[str] = []
        self.patches = 0

    def release_by_tag(self, repo, tag):
        assert (repo, tag) == ("acme/robot", "v1.2.0")
        return dict(self.release)

    def update_body(self, repo, rid, body):
        self.patches += 1
        self.release["body"] = body

    def assets(self, repo, rid):
        return [{"name": n} for n in self.assets_]

    def upload_asset(self, release, name, data, size):
        assert len(data.read()) == size
        if name in self.assets_:
            raise GithubApiError("upload", 422, "already_exists")
        self.assets_.append(name)


class FakeS3:
    def __init__(self, files):
        self.files = files

    def list_objects_v2(self, Bucket, Prefix, **_):
        return {"Contents": [{"Key": k, "Size": len(v)} for k, v in self.files.items() if k.startswith(Prefix)]}

    def get_object(self, Bucket, Key):
        return {"Body": io.BytesIO(self.files[Key])}


class FakeStore:
    def __init__(self, record, others=None):
        self.record = record
        self.others = others or {}

    def get_run(self, run_id):
        if run_id in self.others:
            return dict(self.others[run_id])
        return dict(self.record) if self.record else None

    def update_run(self, run_id, note=None, **fields):
        self.record.update(fields)


def _deps(record, api, token="ghp_" + "a" * 36):
    prefix = f"models/robot/versions/{record.get('run_id')}/"
    s3 = FakeS3({prefix + "best.pt": b"w" * 10, prefix + "best_openvino_model/best.xml": b"<x/>"})
    return WritebackDeps(store=FakeStore(record), s3=s3, bucket="b", token=lambda: token, api=lambda _t: api)


def _note(event=EventType.PROMOTED, **kw):
    return Notification(event_type=event, run_id="gh-run-1", dataset="robot", text="New champion for robot v3.",
                        metrics={"mAP50-95": 0.61}, delta={"mAP50-95": 0.05}, cost_usd=1.234, attempts=1, **kw)


RECORD = {"run_id": "gh-run-1", "dataset": "robot", "trigger_source": "github", "trigger_ref": URL,
          "job_names": ["gh-run-1-a1"]}


def test_a_promoted_release_run_writes_its_section_and_bundle_once():
    api = FakeApi()
    deps = _deps(dict(RECORD), api)
    result = write_back(_note(), deps)
    assert result["written"] and result["assets"] == ["best.pt", "best_openvino_model.best.xml"]
    assert api.release["body"].startswith("notes\n\n<!-- yoloops:run gh-run-1 -->")
    assert "| mAP50-95 | 0.6100 | 0.5600 | +0.0500 |" in api.release["body"] and "cost $1.23" in api.release["body"]
    assert write_back(_note(), deps) == {"written": False, "why": "already written back", **deps.store.record["release_writeback"]}
    assert api.patches == 1 and len(api.assets_) == 2


def test_nothing_is_called_without_a_token_or_for_other_runs():
    api = FakeApi()
    assert write_back(_note(), _deps(dict(RECORD), api, token="Xq3placeholder0000000000000000000000000"))["why"] == "no GitHub token"
    assert write_back(_note(), _deps({**RECORD, "trigger_source": "s3"}, api))["why"] == "not a release run"
    assert write_back(_note(EventType.STARTED), _deps(dict(RECORD), api))["written"] is False
    assert api.patches == 0 and api.assets_ == []


def test_a_rerun_of_the_same_verdict_changes_no_byte_and_other_runs_keep_their_sections():
    first = with_section("notes", "run-a", "A")
    assert with_section(first, "run-a", "A") == first
    both = with_section(first, "run-b", "B")
    assert with_section(both, "run-a", "A2") == both.replace("\nA\n", "\nA2\n")
    failed = render_section(_note(EventType.FAILED, reason="AlgorithmError"))
    assert failed.startswith("### yoloops: FAILED")


def test_tokens_and_release_urls():
    assert usable_token("github_pat_" + "A" * 40) and usable_token("ghp_" + "z" * 36) and usable_token("a" * 40)
    assert not usable_token("") and not usable_token(None) and not usable_token("Xq3placeholder")
    assert repo_and_tag("https://github.com/acme/robot/releases/tag/v1%2Brc") == ("acme/robot", "v1+rc")
    with pytest.raises(ValueError, match="not a GitHub release URL"):
        repo_and_tag("s3://b/k")


def test_a_retry_of_a_release_run_reports_to_that_release():
    api = FakeApi()
    retry = {**RECORD, "run_id": "gh-run-1-y1", "trigger_source": "retry", "trigger_ref": "gh-run-1"}
    deps = _deps(retry, api)
    deps.store.others["gh-run-1"] = dict(RECORD)
    note = _note().model_copy(update={"run_id": "gh-run-1-y1"})
    deps.s3.files = {k.replace("gh-run-1/", "gh-run-1-y1/"): v for k, v in deps.s3.files.items()}
    assert write_back(note, deps)["release"] == "acme/robot@v1.2.0"
    assert "<!-- yoloops:run gh-run-1-y1 -->" in api.release["body"]
    retrain = {**RECORD, "trigger_source": "retrain", "trigger_ref": "gh-run-1"}
    assert write_back(_note(), _deps(retrain, FakeApi()))["why"] == "not a release run"
