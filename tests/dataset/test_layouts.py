"""The layouts people export (Ultralytics, Roboflow, CVAT, Label Studio), the deterministic val split for
datasets without one, and label sampling for S3 prefixes that have no manifest."""

from __future__ import annotations

import pytest
from ds_helpers import BUCKET, CountingS3, comparable, upload_dir, write
from yoloops_core.dataset import (
    MANIFEST_NAME,
    choose_val,
    split_key,
    validate_local_dataset,
    validate_s3_dataset,
)
from yoloops_core.models import DatasetRef

from yoloops.synth import generate_dataset

PREFIX = "datasets/shapes/v1/"
REF = DatasetRef(name="shapes", version="v1")

# layout, n_val -> what the report must say
CASES = [
    ("ultralytics", 3, "ultralytics"),
    ("roboflow", 3, "roboflow"),
    ("cvat", 3, "cvat"),
    ("cvat", 0, "cvat"),  # CVAT's usual export: train.txt only
    ("ultralytics", 0, "ultralytics"),
    ("label_studio", 0, "label_studio"),  # no YAML, no splits
]


def _images(report) -> int:
    return sum(s.images for s in report.splits.values())


@pytest.mark.parametrize(("layout", "n_val", "detected"), CASES)
def test_every_layout_validates_on_s3_like_locally(s3, tmp_path, layout, n_val, detected):
    root = tmp_path / "ds"
    generate_dataset(root, n_train=12, n_val=n_val, imgsz=32, layout=layout, seed=1)
    local = validate_local_dataset(root)
    assert local.valid, local.summary_text()
    assert local.layout == detected
    assert _images(local) == 12 + n_val and local.splits["val"].images >= 1
    if n_val:
        assert local.auto_split is None and local.splits["val"].images == n_val
    else:
        assert local.auto_split is not None
        assert (local.auto_split.train, local.auto_split.val) == (local.splits["train"].images,
                                                                  local.splits["val"].images)
        assert "split off to val" in local.summary and "ValFraction 0.15" in local.layout_note

    upload_dir(s3, root, PREFIX)  # like `aws s3 sync`: no manifest
    remote = validate_s3_dataset(BUCKET, REF, CountingS3(s3))
    assert comparable(remote) == comparable(local)
    assert remote.summary.startswith(f"Dataset s3://{BUCKET}/{PREFIX}: VALID")


def test_the_split_is_by_name_hash_and_stable_when_images_are_added():
    names = [f"images/img{i:04d}.jpg" for i in range(2000)]
    val = choose_val(names, 0.15)
    assert 0.12 < len(val) / len(names) < 0.18
    assert val == {n for n in names if split_key(n) < 0.15}
    assert choose_val(reversed(names), 0.15) == val  # order of the listing does not matter
    more = names + [f"images/new{i}.jpg" for i in range(500)]
    assert choose_val(more, 0.15) & set(names) == val  # adding images never moves the old ones
    assert split_key("a/b/img0001.png") == split_key("other/img0001.jpg")  # only the stem counts


def test_tiny_datasets_still_get_one_val_and_keep_one_train():
    assert len(choose_val(["a.jpg", "b.jpg"], 0.15)) == 1
    assert len(choose_val(["a.jpg", "b.jpg"], 0.9)) == 1
    assert choose_val(["a.jpg"], 0.9) == set()  # train first: one image cannot be split
    assert choose_val(["a.jpg", "b.jpg"], 0) == set()


def test_auto_split_uses_the_configured_fraction_and_zero_rejects(tmp_path):
    generate_dataset(tmp_path, n_train=40, n_val=0, imgsz=32, layout="ultralytics", seed=2)
    report = validate_local_dataset(tmp_path, val_fraction=0.5)
    assert report.valid and report.auto_split.fraction == 0.5
    paths = [f"images/train/{p.name}" for p in (tmp_path / "images/train").iterdir()]
    assert report.splits["val"].images == len(choose_val(paths, 0.5))
    rejected = validate_local_dataset(tmp_path, val_fraction=0)
    assert [e.code for e in rejected.errors] == ["split_missing"]


def test_roboflow_val_labels_moved_by_the_split_are_not_orphans(tmp_path):
    generate_dataset(tmp_path, n_train=20, n_val=0, imgsz=32, layout="roboflow", seed=3)
    report = validate_local_dataset(tmp_path)
    assert report.valid and report.warnings == [], report.summary_text()
    assert report.splits["val"].labels + report.splits["val"].backgrounds == report.splits["val"].images


def test_yaml_with_any_name_and_names_as_a_list_on_s3(s3, tmp_path):
    root = tmp_path / "ds"
    generate_dataset(root, n_train=6, n_val=2, imgsz=32, layout="ultralytics")
    (root / "data.yaml").rename(root / "my_dataset.yaml")
    write(root, "my_dataset.yaml", "train: images/train\nval: images/val\nnames: [circle, square, triangle]\n")
    upload_dir(s3, root, PREFIX)
    report = validate_s3_dataset(BUCKET, REF, s3)
    assert report.valid and report.yaml == "my_dataset.yaml" and report.nc == 3


def test_label_studio_names_come_from_classes_txt_and_splits_from_subfolders(tmp_path):
    generate_dataset(tmp_path, n_train=8, n_val=0, imgsz=32, layout="label_studio")
    report = validate_local_dataset(tmp_path)
    assert report.names == ["circle", "square", "triangle"] and report.yaml == "classes.txt"
    # images/train + images/val subfolders (what some teams make of the export) are used as the splits
    for sub in ("train", "val"):
        (tmp_path / "images" / sub).mkdir()
        (tmp_path / "labels" / sub).mkdir()
    for i, img in enumerate(sorted((tmp_path / "images").glob("*.jpg"))):
        sub = "val" if i < 2 else "train"
        img.rename(tmp_path / "images" / sub / img.name)
        (tmp_path / "labels" / f"{img.stem}.txt").rename(tmp_path / "labels" / sub / f"{img.stem}.txt")
    split = validate_local_dataset(tmp_path)
    assert split.valid and split.auto_split is None
    assert (split.splits["train"].images, split.splits["val"].images) == (6, 2)


@pytest.mark.parametrize(("mutate", "code", "words"), [
    (lambda r: (r / "classes.txt").unlink(), "yaml_missing", "no classes.txt"),
    (lambda r: (r / "images").rename(r / "pictures"), "unsupported_layout", "no images/ folder"),
    (lambda r: write(r, "labels/train_00003.txt", "7 0.5 0.5 0.1 0.1\n"), "class_out_of_range", "not in 0..2"),
])
def test_rejections_name_the_prefix_and_the_reason(s3, tmp_path, mutate, code, words):
    root = tmp_path / "ds"
    generate_dataset(root, n_train=6, n_val=0, imgsz=32, layout="label_studio")
    mutate(root)
    upload_dir(s3, root, PREFIX)
    report = validate_s3_dataset(BUCKET, REF, s3)
    assert not report.valid and code in {e.code for e in report.errors}
    first = report.summary.splitlines()[0]
    assert first.startswith(f"Dataset s3://{BUCKET}/{PREFIX}: REJECTED"), report.summary
    assert words in report.summary and code in report.summary


def test_without_a_manifest_only_a_bounded_sample_of_labels_is_read(s3, tmp_path):
    root = tmp_path / "ds"
    generate_dataset(root, n_train=40, n_val=10, imgsz=32, layout="cvat", seed=4)
    write(root, "labels/train/train_00007.txt", "9 0.5 0.5 0.1 0.1\n")  # broken, maybe outside the sample
    upload_dir(s3, root, PREFIX)
    counting = CountingS3(s3)
    report = validate_s3_dataset(BUCKET, REF, counting, label_sample=10)
    fetched = sorted(k[len(PREFIX):] for k, _ in counting.gets)
    labels = [k for k in fetched if k.startswith("labels/")]
    assert len(labels) == 10 and set(fetched) - set(labels) == {"data.yaml", "train.txt", "val.txt", MANIFEST_NAME}
    assert report.label_check == "sampled" and (report.labels_checked, report.labels_total) == (10, 50)
    assert "10 of 50 label files read here" in report.summary
    # Structure is still complete: every image is counted, labelled or not, from the listing alone.
    assert report.splits["train"].images == 40 and report.splits["val"].images == 10
    in_sample = "labels/train/train_00007.txt" in labels
    assert report.valid is (not in_sample)

    full = validate_s3_dataset(BUCKET, REF, s3, label_sample=None)
    assert full.label_check == "full" and not full.valid
    assert [(e.code, e.key) for e in full.errors] == [("class_out_of_range", PREFIX + "labels/train/train_00007.txt")]


def test_a_sample_that_hits_broken_labels_rejects_with_the_first_problems(s3, tmp_path):
    root = tmp_path / "ds"
    generate_dataset(root, n_train=60, n_val=0, imgsz=32, layout="roboflow", seed=5)
    write(root, "data.yaml", "train: ../train/images\nnames: [circle, square]\n")  # 3 classes in the labels
    upload_dir(s3, root, PREFIX)
    report = validate_s3_dataset(BUCKET, REF, s3, label_sample=20)
    assert not report.valid and report.label_check == "sampled"
    assert report.problem_counts.get("class_out_of_range", 0) >= 1
    assert "errors (first" in report.summary and "class_out_of_range" in report.summary


def test_a_roboflow_export_naming_folders_it_lacks_is_split_not_rejected(tmp_path):
    """Generated 100% train, a Roboflow export still writes `val: ../valid/images` and `test: ../test/images`."""
    generate_dataset(tmp_path, n_train=20, n_val=0, imgsz=32, layout="roboflow", seed=6)
    write(tmp_path, "data.yaml", "train: ../train/images\nval: ../valid/images\ntest: ../test/images\n"
                                 "nc: 3\nnames: ['circle', 'square', 'triangle']\n")
    report = validate_local_dataset(tmp_path)
    assert report.valid and report.auto_split is not None and set(report.splits) == {"train", "val"}
    assert [(w.code, "split off train" in w.message) for w in report.warnings] == [
        ("split_not_found", True), ("split_not_found", False)]
    # elsewhere a val path that does not exist is still a mistake to report, not to paper over
    other = tmp_path / "ultralytics"
    generate_dataset(other, n_train=4, n_val=0, imgsz=32, layout="ultralytics")
    write(other, "data.yaml", "train: images/train\nval: images/valid\nnames: [circle, square, triangle]\n")
    assert [e.code for e in validate_local_dataset(other).errors] == ["split_not_found"]
