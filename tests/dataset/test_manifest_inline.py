"""Inline manifest texts: S3 validation costs one GET (the manifest) when the listing proves the texts are
the objects' bytes, and reads the objects themselves whenever it cannot prove it."""

from __future__ import annotations

import hashlib
import json

import pytest
from ds_helpers import BOX, BUCKET, CountingS3, comparable, ultralytics_dataset, upload_dir, write
from yoloops_core.dataset import MANIFEST_NAME, build_manifest, validate_local_dataset, validate_s3_dataset
from yoloops_core.dataset.manifest import MAX_INLINE_BYTES
from yoloops_core.models import DatasetRef

PREFIX = "datasets/birds/v1/"
REF = DatasetRef(name="birds", version="v1")


def pushed(s3, root, manifest: dict | None = None) -> dict:
    """Upload like `dataset push` (the manifest is also kept locally, so local and S3 reports compare)."""
    manifest = manifest or build_manifest(root, "birds", "v1")
    write(root, MANIFEST_NAME, json.dumps(manifest, indent=1))
    upload_dir(s3, root, PREFIX)
    return manifest


def fetched(counting: CountingS3) -> list[str]:
    return sorted(key[len(PREFIX):] for key, _ in counting.gets)


def test_build_manifest_inlines_small_text_files_only(tmp_path):
    root = ultralytics_dataset(tmp_path, train=1, val=1)
    write(root, "labels/train/big.txt", "0 0.5 0.5 0.1 0.1\n" * (MAX_INLINE_BYTES // 18 + 1))
    write(root, "labels/train/binary.txt", b"\xff\xfe\x00bad")
    files = {f["path"]: f for f in build_manifest(root, "birds", "v1")["files"]}
    for path, f in files.items():
        data = (root / path).read_bytes()
        assert f["size"] == len(data) and f["md5"] == hashlib.md5(data).hexdigest()
        assert f["sha256"] == hashlib.sha256(data).hexdigest()
    assert files["labels/train/img0.txt"]["text"] == BOX
    assert files["data.yaml"]["text"] == (root / "data.yaml").read_text()
    for path in ("images/train/img0.png", "labels/train/big.txt", "labels/train/binary.txt"):
        assert "text" not in files[path], path


def test_consistent_inline_texts_cost_one_get(s3, tmp_path):
    root = ultralytics_dataset(tmp_path / "ds", train=6, val=3)
    write(root, "labels/val/img2.txt", "7 0.5 0.5 0.1 0.1\n")  # a real error must still be found inline
    pushed(s3, root)
    counting = CountingS3(s3)
    report = validate_s3_dataset(BUCKET, REF, counting)
    assert fetched(counting) == [MANIFEST_NAME] and counting.paginations == 1
    assert comparable(report) == comparable(validate_local_dataset(root))
    assert [(e.code, e.key) for e in report.errors] == [("class_out_of_range", PREFIX + "labels/val/img2.txt")]
    assert report.splits["train"].instances == 6


def test_label_rewritten_after_push_is_read_and_rejected(s3, tmp_path):
    root = ultralytics_dataset(tmp_path / "ds")
    pushed(s3, root)
    # Same size as the pushed label, so only the ETag tells the object changed.
    bad = "5" + BOX[1:]
    s3.put_object(Bucket=BUCKET, Key=PREFIX + "labels/train/img1.txt", Body=bad.encode())
    counting = CountingS3(s3)
    report = validate_s3_dataset(BUCKET, REF, counting)
    assert fetched(counting) == ["labels/train/img1.txt", MANIFEST_NAME]
    assert not report.valid
    assert [(e.code, e.key) for e in report.errors] == [("class_out_of_range", PREFIX + "labels/train/img1.txt")]


@pytest.mark.parametrize("forge", ["text_only", "text_and_md5"])
def test_manifest_texts_that_do_not_match_the_objects_are_not_used(s3, tmp_path, forge):
    """A manifest claiming good labels for bad objects (or the reverse) never hides what S3 holds."""
    root = ultralytics_dataset(tmp_path / "ds")
    write(root, "labels/val/img0.txt", "3 0.5 0.5 0.1 0.1\n")  # the object in S3 is bad
    manifest = build_manifest(root, "birds", "v1")
    entry = next(f for f in manifest["files"] if f["path"] == "labels/val/img0.txt")
    entry["text"] = BOX  # ...the manifest claims it is fine
    if forge == "text_and_md5":
        entry["md5"] = hashlib.md5(BOX.encode()).hexdigest()
    pushed(s3, root, manifest)
    counting = CountingS3(s3)
    report = validate_s3_dataset(BUCKET, REF, counting)
    assert "labels/val/img0.txt" in fetched(counting)
    assert [(e.code, e.key) for e in report.errors] == [("class_out_of_range", PREFIX + "labels/val/img0.txt")]


def test_manifest_without_md5_or_text_validates_through_gets(s3, tmp_path):
    root = ultralytics_dataset(tmp_path / "ds", train=3, val=2)
    write(root, "labels/train/img2.txt", "0 0.5 0.5 0.1\n")
    old = build_manifest(root, "birds", "v1")
    old["files"] = [{"path": f["path"], "size": f["size"], "sha256": f["sha256"]} for f in old["files"]]
    pushed(s3, root, old)
    counting = CountingS3(s3)
    report = validate_s3_dataset(BUCKET, REF, counting)
    labels = sorted(p.relative_to(root).as_posix() for p in (root / "labels").rglob("*.txt"))
    assert fetched(counting) == sorted(["data.yaml", MANIFEST_NAME, *labels])
    assert comparable(report) == comparable(validate_local_dataset(root))
    assert report.problem_counts == {"label_format": 1}


def test_no_manifest_validates_through_gets(s3, tmp_path):
    root = ultralytics_dataset(tmp_path / "ds", train=2, val=1)
    upload_dir(s3, root, PREFIX)
    counting = CountingS3(s3)
    report = validate_s3_dataset(BUCKET, REF, counting)
    assert report.valid and comparable(report) == comparable(validate_local_dataset(root))
    # The manifest is asked for once (it does not exist), every label once.
    assert fetched(counting) == sorted(["data.yaml", MANIFEST_NAME, "labels/train/img0.txt",
                                        "labels/train/img1.txt", "labels/val/img0.txt"])


def test_multipart_object_is_read_even_when_its_text_matches(s3, tmp_path):
    """A multipart ETag is not an MD5 of the content, so nothing proves the inline copy: GET it."""
    root = ultralytics_dataset(tmp_path / "ds", train=2, val=1)
    pushed(s3, root)
    key = PREFIX + "labels/train/img0.txt"
    upload = s3.create_multipart_upload(Bucket=BUCKET, Key=key)
    part = s3.upload_part(Bucket=BUCKET, Key=key, UploadId=upload["UploadId"], PartNumber=1, Body=BOX.encode())
    s3.complete_multipart_upload(Bucket=BUCKET, Key=key, UploadId=upload["UploadId"],
                                 MultipartUpload={"Parts": [{"ETag": part["ETag"], "PartNumber": 1}]})
    assert "-" in s3.head_object(Bucket=BUCKET, Key=key)["ETag"]
    counting = CountingS3(s3)
    report = validate_s3_dataset(BUCKET, REF, counting)
    assert report.valid and fetched(counting) == ["labels/train/img0.txt", MANIFEST_NAME]


def test_images_are_never_inlined_or_fetched(s3, tmp_path):
    root = ultralytics_dataset(tmp_path / "ds", train=1, val=1)
    write(root, "images/train/notes.txt", "an image folder's text file is a label for no image\n")
    manifest = pushed(s3, root)
    assert all("text" not in f for f in manifest["files"] if f["path"].endswith(".png"))
    counting = CountingS3(s3)
    validate_s3_dataset(BUCKET, REF, counting)
    assert not any(k.endswith(".png") for k in fetched(counting))
