"""The S3 prefix and S3 zip sources give the same report as the local folder, without reading images."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import pytest
from ds_helpers import (
    BOX,
    BUCKET,
    POLY,
    CountingS3,
    comparable,
    roboflow_dataset,
    ultralytics_dataset,
    upload_dir,
    write,
)
from yoloops_core.dataset import MANIFEST_NAME, build_manifest, validate_local_dataset, validate_s3_dataset
from yoloops_core.models import DatasetRef


def zip_dir(root: Path, top: str = "", compression=zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as zf:
        for path in sorted(root.rglob("*")):
            if path.is_file():
                zf.write(path, top + path.relative_to(root).as_posix())
    return buf.getvalue()


def broken_dataset(root: Path) -> Path:
    """A dataset with errors and warnings of several kinds, so agreement is about more than 'valid'."""
    ultralytics_dataset(root, train=5, val=3)
    write(root, "labels/train/img1.txt", BOX + "3 0.5 0.5 0.1 0.1\n")
    write(root, "labels/train/img2.txt", POLY)
    write(root, "labels/val/img0.txt", "0 1.5 0.5 0.1 0.1\n")
    write(root, "images/val/notes.bmpx", b"??")
    (root / "labels/train/img3.txt").unlink()
    return root


@pytest.mark.parametrize("make", [ultralytics_dataset, roboflow_dataset, broken_dataset])
def test_prefix_and_zip_agree_with_local(s3, tmp_path, make):
    root = make(tmp_path / "ds")
    write(root, MANIFEST_NAME, json.dumps(build_manifest(root, "birds", "v1")))
    local = validate_local_dataset(root)

    upload_dir(s3, root, "datasets/birds/v1/")
    counting = CountingS3(s3)
    prefix = validate_s3_dataset(BUCKET, DatasetRef(name="birds", version="v1"), counting)
    assert comparable(prefix) == comparable(local)
    assert prefix.source == f"s3://{BUCKET}/datasets/birds/v1/"
    assert counting.paginations == 1
    read = {key.rsplit("/", 1)[-1] for key, _ in counting.gets}
    assert not any(name.endswith((".png", ".jpg", ".bmpx")) for name in read), read  # never an image
    assert {e.key for e in prefix.errors} <= {f"datasets/birds/v1/{e.key}" for e in local.errors}

    s3.put_object(Bucket=BUCKET, Key="datasets/birds/v2.zip", Body=zip_dir(root))
    counting = CountingS3(s3)
    zipped = validate_s3_dataset(BUCKET, DatasetRef(name="birds", version="v2", format="zip"), counting)
    assert comparable(zipped) == comparable(local)
    assert all(rng is not None for _, rng in counting.gets)  # ranged reads only, never the whole archive
    assert local.valid == (make is not broken_dataset)


def test_zip_with_a_top_folder_and_stored_members(s3, tmp_path):
    root = ultralytics_dataset(tmp_path / "ds", label=POLY)
    s3.put_object(Bucket=BUCKET, Key="datasets/birds/v3.zip", Body=zip_dir(root, "birds-v3/", zipfile.ZIP_STORED))
    report = validate_s3_dataset(BUCKET, DatasetRef(name="birds", version="v3", format="zip"), s3)
    assert report.valid and report.task == "segment" and report.yaml == "birds-v3/data.yaml"
    assert report.splits["train"].instances == 4


def test_zip_errors_name_the_member(s3, tmp_path):
    root = ultralytics_dataset(tmp_path / "ds")
    write(root, "labels/val/img1.txt", "9 0.5 0.5 0.1 0.1\n")
    s3.put_object(Bucket=BUCKET, Key="datasets/birds/v4.zip", Body=zip_dir(root))
    report = validate_s3_dataset(BUCKET, DatasetRef(name="birds", version="v4", format="zip"), s3)
    [error] = report.errors
    assert error.code == "class_out_of_range"
    assert error.key == "datasets/birds/v4.zip!labels/val/img1.txt"


def test_local_zip_is_validated_like_the_folder(tmp_path):
    root = roboflow_dataset(tmp_path / "ds")
    (tmp_path / "ds.zip").write_bytes(zip_dir(root))
    assert comparable(validate_local_dataset(tmp_path / "ds.zip")) == comparable(validate_local_dataset(root))


@pytest.mark.parametrize(("ref", "code"), [
    (DatasetRef(name="birds", version="nope"), "dataset_not_found"),
    (DatasetRef(name="birds", version="nope", format="zip"), "dataset_not_found"),
    (DatasetRef(name="birds", version="corrupt", format="zip"), "zip_invalid"),
])
def test_missing_or_corrupt_dataset_is_a_rejection(s3, ref, code):
    s3.put_object(Bucket=BUCKET, Key="datasets/birds/corrupt.zip", Body=b"PK\x03\x04 this is not a zip" * 10)
    report = validate_s3_dataset(BUCKET, ref, s3)
    assert not report.valid and [e.code for e in report.errors] == [code]
    assert ref.key in report.errors[0].message or code == "zip_invalid"


def test_corrupt_zip_member_is_reported_not_raised(s3, tmp_path):
    root = ultralytics_dataset(tmp_path / "ds")
    blob = bytearray(zip_dir(root, compression=zipfile.ZIP_STORED))
    at = blob.find(BOX.encode())  # first label's bytes: flip one so the CRC no longer matches
    blob[at] = ord("1")
    s3.put_object(Bucket=BUCKET, Key="datasets/birds/v5.zip", Body=bytes(blob))
    report = validate_s3_dataset(BUCKET, DatasetRef(name="birds", version="v5", format="zip"), s3)
    assert [e.code for e in report.errors] == ["unreadable"] and "CRC" in report.errors[0].message
