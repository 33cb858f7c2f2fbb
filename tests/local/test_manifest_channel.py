"""The local SageMaker honours ManifestFile channels as SageMaker does: exactly the listed keys, at their
paths relative to the manifest's prefix (issue 18, item 4: a run trains exactly what it validated)."""

from __future__ import annotations

import json

import boto3
import pytest
from moto import mock_aws

from yoloops.local.training import ProcessTrainingBackend, SageMakerApiError, TrainingJob


@pytest.fixture
def s3(monkeypatch):
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket="bkt")
        for key in ("datasets/d/data.yaml", "datasets/d/images/train/a.jpg", "datasets/d/v1/images/train/b.jpg",
                    "datasets/d/v2.zip", "datasets/d/v2.zip.bak"):
            client.put_object(Bucket="bkt", Key=key, Body=key.encode())
        yield client


def _prepare(s3, tmp_path, manifest: list) -> list[str]:
    s3.put_object(Bucket="bkt", Key="runs/r/input/train.manifest", Body=json.dumps(manifest).encode())
    backend = ProcessTrainingBackend(tmp_path / "work")
    backend.attach(s3, lambda detail: None)
    job = TrainingJob(request={"TrainingJobName": "r-a1", "InputDataConfig": [{
        "ChannelName": "train", "DataSource": {"S3DataSource": {
            "S3DataType": "ManifestFile", "S3Uri": "s3://bkt/runs/r/input/train.manifest"}}}]})
    base = tmp_path / "job"
    backend._prepare(job, base)
    train = base / "input" / "data" / "train"
    return sorted(p.relative_to(train).as_posix() for p in train.rglob("*") if p.is_file())


def test_an_unversioned_manifest_brings_its_files_and_no_version_folder(s3, tmp_path):
    got = _prepare(s3, tmp_path, [{"prefix": "s3://bkt/datasets/d/"}, "data.yaml", "images/train/a.jpg"])
    assert got == ["data.yaml", "images/train/a.jpg"]


def test_a_zip_manifest_brings_the_zip_and_not_its_siblings(s3, tmp_path):
    assert _prepare(s3, tmp_path, [{"prefix": "s3://bkt/datasets/d/"}, "v2.zip"]) == ["v2.zip"]


def test_a_listed_key_that_vanished_fails_the_job(s3, tmp_path):
    with pytest.raises(SageMakerApiError, match=r"gone\.jpg"):
        _prepare(s3, tmp_path, [{"prefix": "s3://bkt/datasets/d/"}, "data.yaml", "images/train/gone.jpg"])
