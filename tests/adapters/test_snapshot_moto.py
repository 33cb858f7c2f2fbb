"""A run trains exactly the data it validated (issue 18, item 4): the validator's listing becomes the run's
ManifestFile channel; an unversioned dataset leaves its version folders out, `<v>.zip` its siblings."""

from __future__ import annotations

import json

import pytest
from moto import mock_aws
from yoloops_core.dataset import unversioned_member, validate_s3_dataset
from yoloops_core.models import DatasetRef
from yoloops_core.snapshot import Snapshot, channels, plain_md5, write_snapshot

BUCKET = "snap-bucket"
YAML = b"path: .\ntrain: images/train\nval: images/val\nnames: {0: shape}\n"


@pytest.fixture
def s3(monkeypatch):
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        import boto3

        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        yield client


def _put_dataset(s3, prefix: str, tag: bytes = b"") -> list[str]:
    files = {"data.yaml": YAML}
    for split, n in (("train", 3), ("val", 1)):
        for i in range(n):
            files[f"images/{split}/{i}.jpg"] = b"\xff\xd8jpeg" + tag + bytes([i]) + split.encode()
            files[f"labels/{split}/{i}.txt"] = b"0 0.5 0.5 0.2 0.2\n"
    for rel, body in files.items():
        s3.put_object(Bucket=BUCKET, Key=prefix + rel, Body=body)
    return sorted(prefix + rel for rel in files)


def test_unversioned_membership_is_the_upload_sessions_rule():
    assert unversioned_member("data.yaml") and unversioned_member("images/train/a.jpg")
    assert unversioned_member("train/labels/a.txt")
    assert not unversioned_member("v1/images/a.jpg")  # a version folder
    assert not unversioned_member("v2.zip")  # a versioned zip


def test_unversioned_validation_lists_and_snapshots_only_its_own_files(s3):
    mine = _put_dataset(s3, "datasets/shapes/")
    _put_dataset(s3, "datasets/shapes/v1/", tag=b"v1")  # another version, under the same prefix
    s3.put_object(Bucket=BUCKET, Key="datasets/shapes/v2.zip", Body=b"PK not this one")
    ref = DatasetRef(name="shapes", version="abc12345", location="datasets/shapes/")
    report = validate_s3_dataset(BUCKET, ref, s3)
    assert report.valid, report.errors
    assert sorted(k for k, _, _ in report.objects) == mine
    snap = write_snapshot(s3, BUCKET, "run-1", report.objects)
    manifest = json.loads(s3.get_object(Bucket=BUCKET, Key=snap.manifest_key)["Body"].read())
    assert manifest[0] == {"prefix": f"s3://{BUCKET}/datasets/shapes/"}
    assert sorted(manifest[1:]) == sorted(k.removeprefix("datasets/shapes/") for k in mine)
    assert not any(r.startswith("v1/") or r.endswith(".zip") for r in manifest[1:])
    listing = json.loads(s3.get_object(Bucket=BUCKET, Key=snap.listing_prefix + "listing.json")["Body"].read())
    sizes = {o["Key"]: o["Size"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix="datasets/shapes/")["Contents"]}
    assert {f["path"]: f["size"] for f in listing["files"]} == \
        {k.removeprefix("datasets/shapes/"): sizes[k] for k in mine}
    assert all(plain_md5(f["etag"]) for f in listing["files"])  # single-part uploads: their MD5


def test_a_versioned_zip_is_its_one_object_never_its_siblings(s3, tmp_path):
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("data.yaml", YAML)
        for split in ("train", "val"):
            zf.writestr(f"images/{split}/0.jpg", b"\xff\xd8" + split.encode())
            zf.writestr(f"labels/{split}/0.txt", "0 0.5 0.5 0.2 0.2\n")
    s3.put_object(Bucket=BUCKET, Key="datasets/shapes/v3.zip", Body=buf.getvalue())
    s3.put_object(Bucket=BUCKET, Key="datasets/shapes/v3.zip.bak", Body=b"old archive")
    report = validate_s3_dataset(BUCKET, DatasetRef(name="shapes", version="v3", format="zip"), s3)
    assert report.valid, report.errors
    [(key, size, etag)] = report.objects
    assert key == "datasets/shapes/v3.zip" and size == len(buf.getvalue()) and plain_md5(etag)
    snap = write_snapshot(s3, BUCKET, "run-z", report.objects)
    manifest = json.loads(s3.get_object(Bucket=BUCKET, Key=snap.manifest_key)["Body"].read())
    assert manifest == [{"prefix": f"s3://{BUCKET}/datasets/shapes/"}, "v3.zip"]


def test_the_plan_trains_the_manifest_and_hands_the_listing_to_the_job():
    snap = Snapshot(manifest_key="runs/r/input/train.manifest", listing_prefix="runs/r/input/validated/", files=9)
    train, validated = channels("b", snap)
    assert train["ChannelName"] == "train"
    assert train["DataSource"]["S3DataSource"] == {"S3DataType": "ManifestFile",
                                                   "S3Uri": "s3://b/runs/r/input/train.manifest",
                                                   "S3DataDistributionType": "FullyReplicated"}
    assert validated["ChannelName"] == "validated"
    assert validated["DataSource"]["S3DataSource"]["S3Uri"] == "s3://b/runs/r/input/validated/"


def test_no_objects_no_snapshot(s3):
    with pytest.raises(ValueError, match="no objects"):
        write_snapshot(s3, BUCKET, "run-x", [])
