"""Before epoch 1 the job checks its files against the validated listing (issue 18, item 4)."""

from __future__ import annotations

import hashlib
import json

import pytest
from yoloops_train.snapshot import DatasetChanged, verify_snapshot


def _job(tmp_path, files: dict[str, bytes], listed: dict[str, bytes] | None = None, multipart=()):
    base, train = tmp_path / "ml", tmp_path / "ml" / "input" / "data" / "train"
    for rel, body in files.items():
        (train / rel).parent.mkdir(parents=True, exist_ok=True)
        (train / rel).write_bytes(body)
    listed = files if listed is None else listed
    entries = [{"path": rel, "size": len(body),
                "etag": "0123456789abcdef0123456789abcdef-2" if rel in multipart else hashlib.md5(body).hexdigest()}
               for rel, body in listed.items()]
    channel = base / "input" / "data" / "validated"
    channel.mkdir(parents=True)
    (channel / "listing.json").write_text(json.dumps({"bucket": "b", "prefix": "datasets/d/v1/", "files": entries}))
    return train, base


FILES = {"data.yaml": b"names: [a]\n", "images/train/0.jpg": b"jpeg0", "labels/train/0.txt": b"0 .5 .5 .1 .1\n"}


def test_identical_files_pass(tmp_path):
    train, base = _job(tmp_path, FILES)
    assert verify_snapshot(train, base, env={}) == 3


@pytest.mark.parametrize(("got", "needle"), [
    ({**FILES, "images/train/0.jpg": b"jpeg0-longer"}, "images/train/0.jpg: 12 bytes, validated 5"),
    ({**FILES, "images/train/0.jpg": b"JPEG0"}, "images/train/0.jpg: content differs"),
    ({k: v for k, v in FILES.items() if k != "data.yaml"}, "data.yaml: missing"),
    ({**FILES, "images/train/new.jpg": b"x"}, "images/train/new.jpg: not validated"),
])
def test_any_change_fails_the_run_with_dataset_changed_after_validation(tmp_path, got, needle):
    train, base = _job(tmp_path, got, listed=FILES)
    with pytest.raises(DatasetChanged, match="dataset changed after validation") as info:
        verify_snapshot(train, base, env={})
    assert needle in str(info.value) and "s3://b/datasets/d/v1/" in str(info.value)


def test_a_multipart_etag_is_not_an_md5_so_only_the_size_is_checked(tmp_path):
    changed = {**FILES, "images/train/0.jpg": b"JPEG0"}  # same size, other bytes
    train, base = _job(tmp_path, changed, listed=FILES, multipart=("images/train/0.jpg",))
    assert verify_snapshot(train, base, env={}) == 3


def test_no_listing_means_nothing_to_check(tmp_path):
    train = tmp_path / "train"
    train.mkdir()
    assert verify_snapshot(train, tmp_path, env={}) is None
