"""Each class of dataset problem, on small hand-written datasets in both YOLO layouts."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
from ds_helpers import BOX, PNG, POLY, roboflow_dataset, ultralytics_dataset, write
from hypothesis import given, settings
from hypothesis import strategies as st
from yoloops_core.dataset import MANIFEST_NAME, build_manifest, img2label, validate_local_dataset


def codes(items):
    return sorted({p.code for p in items})


def only_error(report, code):
    assert not report.valid
    assert codes(report.errors) == [code], report.summary_text()
    return report.errors


def test_ultralytics_layout_counts_and_histogram(tmp_path):
    write(ultralytics_dataset(tmp_path), "labels/train/img0.txt", BOX + "1 0.2 0.2 0.1 0.1\n")
    report = validate_local_dataset(tmp_path)
    assert report.valid and report.warnings == []
    assert report.task == "detect" and report.nc == 2 and report.names == ["cat", "dog"]
    assert report.splits["train"].model_dump() == {"images": 4, "labels": 4, "backgrounds": 0, "instances": 5}
    assert report.splits["val"].images == 2
    assert report.class_instances == {"cat": 6, "dog": 1}
    assert "test" not in report.splits


def test_roboflow_layout_with_parent_relative_yaml_paths(tmp_path):
    report = validate_local_dataset(roboflow_dataset(tmp_path))
    assert report.valid, report.summary_text()
    assert {k: v.images for k, v in report.splits.items()} == {"train": 3, "val": 2, "test": 1}
    assert report.class_instances == {"cat": 6}


def test_img2label_follows_ultralytics_for_both_layouts():
    assert img2label("images/train/a.b.jpg") == "labels/train/a.b.txt"
    assert img2label("train/images/x.png") == "train/labels/x.txt"
    assert img2label("data/imgs/x.png") == "data/imgs/x.txt"  # labels next to images


def test_any_yaml_with_train_val_names_is_found_and_names_may_be_a_list(tmp_path):
    ultralytics_dataset(tmp_path)
    (tmp_path / "data.yaml").unlink()
    write(tmp_path, "notes.yaml", "author: me\n")
    write(tmp_path, "birds.yaml", "train: images/train\nval: images/val\nnc: 2\nnames: [cat, dog]\n")
    report = validate_local_dataset(tmp_path)
    assert report.valid and report.yaml == "birds.yaml" and report.names == ["cat", "dog"]


def test_missing_yaml(tmp_path):
    ultralytics_dataset(tmp_path)
    (tmp_path / "data.yaml").unlink()
    only_error(validate_local_dataset(tmp_path), "yaml_missing")


@pytest.mark.parametrize(("yaml_text", "code"), [
    ("train: images/train\nval: images/val\nnc: 3\nnames: [cat, dog]\n", "nc_mismatch"),
    ("train: images/train\nval: images/val\nnames: {0: cat, 2: dog}\n", "names_invalid"),
    ("train: images/train\nval: images/val\nnames: cat\n", "names_invalid"),
    ("val: images/val\nnames: [cat, dog]\n", "split_missing"),
    ("train: images/train\nval: images/validation\nnames: [cat, dog]\n", "split_not_found"),
    ("train: images/train\nval: [images/val\nnames: [cat]\n", "yaml_invalid"),
])
def test_yaml_problems(tmp_path, yaml_text, code):
    ultralytics_dataset(tmp_path, yaml_text=yaml_text)
    assert code in codes(validate_local_dataset(tmp_path).errors)


def test_nc_without_names_is_a_warning(tmp_path):
    ultralytics_dataset(tmp_path, yaml_text="train: images/train\nval: images/val\nnc: 2\n")
    report = validate_local_dataset(tmp_path)
    assert report.valid and codes(report.warnings) == ["names_missing"] and report.names == ["class0", "class1"]


def test_image_list_files(tmp_path):
    ultralytics_dataset(tmp_path, yaml_text="train: train.txt\nval: val.txt\nnames: [cat, dog]\n")
    write(tmp_path, "train.txt", "./images/train/img0.png\nimages/train/img1.png\n\n")
    write(tmp_path, "val.txt", "./images/val/img0.png\n./images/val/gone.png\n")
    report = validate_local_dataset(tmp_path)
    assert report.splits["train"].images == 2 and report.splits["val"].images == 1
    [error] = only_error(report, "image_missing")
    assert error.key == "val.txt" and "gone.png" in error.message and "line 2" in error.message


def test_segment_labels_set_the_task(tmp_path):
    ultralytics_dataset(tmp_path, label=POLY)
    report = validate_local_dataset(tmp_path)
    assert report.valid and report.task == "segment" and report.class_instances == {"dog": 6}


@pytest.mark.parametrize(("label", "code"), [
    ("0 0.5 0.5 0.2\n", "label_format"),                   # 4 values
    ("0 0.5 0.5 0.2 0.2 0.3\n", "label_format"),           # 6 values: neither box nor polygon
    ("1 0.1 0.1 0.9 0.1 0.5 0.9 0.3\n", "label_format"),   # odd polygon coordinate count
    ("0 0.5 abc 0.2 0.2\n", "label_format"),
    ("2 0.5 0.5 0.2 0.2\n", "class_out_of_range"),
    ("-1 0.5 0.5 0.2 0.2\n", "class_out_of_range"),
    ("0.5 0.5 0.5 0.2 0.2\n", "class_out_of_range"),
    ("0 0.5 1.5 0.2 0.2\n", "coords_out_of_range"),
    ("1 0.1 0.1 0.9 -0.1 0.5 0.9\n", "coords_out_of_range"),
    ("0 nan 0.5 0.2 0.2\n", "coords_out_of_range"),
])
def test_bad_label_lines(tmp_path, label, code):
    ultralytics_dataset(tmp_path)
    write(tmp_path, "labels/train/img2.txt", BOX + label)
    [error] = only_error(validate_local_dataset(tmp_path), code)
    assert error.key == "labels/train/img2.txt" and "line 2" in error.message


def test_zero_byte_image_is_an_error_and_empty_label_is_a_background(tmp_path):
    ultralytics_dataset(tmp_path)
    write(tmp_path, "images/train/img1.png", b"")
    write(tmp_path, "labels/train/img2.txt", "")
    report = validate_local_dataset(tmp_path)
    [error] = only_error(report, "empty_file")
    assert error.key == "images/train/img1.png"
    assert report.splits["train"].backgrounds == 1 and report.splits["train"].labels == 3


def test_unreadable_label(tmp_path):
    ultralytics_dataset(tmp_path)
    write(tmp_path, "labels/val/img1.txt", b"\xff\xfe\x00garbage")
    [error] = only_error(validate_local_dataset(tmp_path), "unreadable")
    assert error.key == "labels/val/img1.txt"


def test_unknown_extension_and_orphan_label_are_warnings(tmp_path):
    ultralytics_dataset(tmp_path)
    write(tmp_path, "images/train/anim.gif", PNG)
    write(tmp_path, "labels/train/lost.txt", BOX)
    write(tmp_path, "images/train/.DS_Store", b"x")
    report = validate_local_dataset(tmp_path)
    assert report.valid and codes(report.warnings) == ["orphan_label", "unknown_extension"]
    assert {p.key for p in report.warnings} == {"images/train/anim.gif", "labels/train/lost.txt"}


def test_duplicate_stems_in_a_split(tmp_path):
    ultralytics_dataset(tmp_path)
    write(tmp_path, "images/train/img0.jpg", PNG)
    [error] = only_error(validate_local_dataset(tmp_path), "duplicate_stem")
    assert "img0" in error.message


def test_empty_val_split_rejects(tmp_path):
    ultralytics_dataset(tmp_path, val=0)
    write(tmp_path, "images/val/clip.gif", b"GIF89a")  # the folder exists but holds no image YOLO reads
    [error] = only_error(validate_local_dataset(tmp_path), "empty_split")
    assert "'val'" in error.message


def test_mostly_background_split_warns(tmp_path):
    ultralytics_dataset(tmp_path)
    for i in range(3):
        (tmp_path / f"labels/train/img{i}.txt").unlink()
    report = validate_local_dataset(tmp_path)
    assert report.valid and codes(report.warnings) == ["mostly_background"]
    assert report.splits["train"].backgrounds == 3


def test_manifest_round_trip_and_mismatches(tmp_path):
    ultralytics_dataset(tmp_path)
    manifest = build_manifest(tmp_path, "birds", "v1")
    assert manifest["dataset"] == "birds" and manifest["version"] == "v1"
    paths = [f["path"] for f in manifest["files"]]
    assert paths == sorted(paths) and "data.yaml" in paths and MANIFEST_NAME not in paths
    assert all(len(f["sha256"]) == 64 for f in manifest["files"])
    write(tmp_path, MANIFEST_NAME, json.dumps(manifest))
    assert validate_local_dataset(tmp_path).valid
    assert build_manifest(tmp_path, "birds", "v1")["files"] == manifest["files"]  # never lists itself

    (tmp_path / "images/val/img1.png").unlink()
    (tmp_path / "labels/val/img1.txt").unlink()
    write(tmp_path, "labels/train/img0.txt", BOX + BOX.replace("0 ", "1 ", 1))
    report = validate_local_dataset(tmp_path)
    assert codes(report.errors) == ["manifest_missing", "manifest_size_mismatch"]
    assert {p.key for p in report.errors} == {"images/val/img1.png", "labels/val/img1.txt",
                                              "labels/train/img0.txt"}
    write(tmp_path, MANIFEST_NAME, "{not json")
    assert "manifest_invalid" in codes(validate_local_dataset(tmp_path).errors)


def test_problem_lists_are_capped_but_counted(tmp_path):
    ultralytics_dataset(tmp_path, train=60)
    for i in range(60):
        write(tmp_path, f"labels/train/img{i}.txt", "7 0.5 0.5 0.2 0.2\n")
    report = validate_local_dataset(tmp_path)
    assert report.error_count == 60 and len(report.errors) == 50
    assert report.problem_counts["class_out_of_range"] == 60


def test_summary_text_is_readable(tmp_path):
    ultralytics_dataset(tmp_path)
    write(tmp_path, "labels/train/img0.txt", "5 0.5 0.5 0.2 0.2\n")
    text = validate_local_dataset(tmp_path).summary_text()
    assert "REJECTED (1 errors, 0 warnings)" in text
    assert "train images=4 labelled=3 backgrounds=1 instances=3" in text
    assert "class_out_of_range: line 1: class id 5 is not in 0..1 [labels/train/img0.txt]" in text


def test_missing_directory_is_a_rejection(tmp_path):
    only_error(validate_local_dataset(tmp_path / "nope"), "dataset_not_found")


@settings(max_examples=60, deadline=None)
@given(label=st.text(alphabet="0123456789 .-e\nabc", max_size=80),
       yaml_text=st.sampled_from(["", "names: [a]\ntrain: images/train\nval: images/val\n", "- 1\n- 2\n",
                                  "train: 3\nval: [1, 2]\nnames: {x: 1}\n"]))
def test_fuzz_any_label_or_yaml_gives_a_report_not_an_exception(label, yaml_text):
    with tempfile.TemporaryDirectory() as tmp:
        root = ultralytics_dataset(Path(tmp), train=1, val=1, label=label)
        if yaml_text:
            write(root, "data.yaml", yaml_text)
        report = validate_local_dataset(root)
        assert report.valid == (report.error_count == 0)
        assert all(p.code and p.message for p in report.errors + report.warnings)
