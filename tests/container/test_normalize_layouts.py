"""The container trains every layout people export without changes by hand: yoloops_train.layouts writes one
normalized data.yaml (absolute image lists), splits val off exactly as the validator reported, and every
label is checked before the first epoch. One layout trains end to end; the others are normalized only."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml
from container_helpers import TRAIN_PY
from yoloops_core.dataset import layouts as core_layouts
from yoloops_core.dataset import validate_local_dataset

from yoloops.synth import generate_dataset

LAYOUTS = [("ultralytics", 3), ("roboflow", 3), ("cvat", 3), ("cvat", 0), ("ultralytics", 0), ("roboflow", 0),
           ("label_studio", 0)]


@pytest.fixture(scope="module")
def layouts_mod(train_module):
    from yoloops_train import layouts

    return layouts


def test_the_split_rule_is_the_validators(layouts_mod):
    """Two copies (the image cannot import yoloops_core): same keys, same picks, for any names and fractions."""
    names = [f"{d}/img_{i:05d}.{ext}" for i in range(3000) for d, ext in [("images/train", "jpg")]]
    names += ["a.png", "b.PNG", "x/y/z.tif", "ünïcode name.jpg", "dots.in.name.jpeg"]
    for n in names[::97]:
        assert layouts_mod.split_key(n) == core_layouts.split_key(n)
    for fraction in (0.0, 0.05, 0.15, 0.5, 0.9):
        for subset in (names, names[:2], names[:1], names[:7], []):
            assert layouts_mod.choose_val(subset, fraction) == core_layouts.choose_val(subset, fraction)


def _lines(path) -> list[str]:
    return Path(path).read_text().splitlines()


@pytest.mark.parametrize(("layout", "n_val"), LAYOUTS)
def test_every_layout_is_normalized_like_the_validator_reports_it(train_module, tmp_path, layout, n_val):
    from ultralytics.data.utils import check_det_dataset, img2label_paths

    src = tmp_path / "src"
    generate_dataset(src, n_train=10, n_val=n_val, imgsz=32, layout=layout, seed=3)
    report = validate_local_dataset(src)
    assert report.valid, report.summary_text()

    ds = train_module.prepare_dataset(src, tmp_path / "work")
    data = yaml.safe_load(ds.yaml_path.read_text())
    assert data["names"] == {0: "circle", 1: "square", 2: "triangle"} and data["nc"] == 3
    for split in ("train", "val"):
        assert Path(data[split]).is_absolute() and Path(data[split]).is_file()
        assert all(Path(p).is_absolute() and Path(p).is_file() for p in _lines(data[split]))
        # Ultralytics reads a tree of the upload's images and labels only (safetree), same relative paths
        assert all(Path(p).is_relative_to(ds.tree) and (src / Path(p).relative_to(ds.tree)).is_file()
                   for p in _lines(data[split]))
    # the same split as the report (counts) and as the validator's rule (which images)
    assert (ds.n_train, ds.n_val) == (report.splits["train"].images, report.splits["val"].images)
    if n_val == 0:
        assert report.auto_split is not None
        everything = [str(Path(p).relative_to(ds.tree)) for s in ("train", "val") for p in _lines(data[s])]
        picked = core_layouts.choose_val(everything, report.auto_split.fraction)
        assert {str(Path(p).relative_to(ds.tree)) for p in _lines(data["val"])} == picked
    # Ultralytics itself accepts it offline, and finds every label next to its image
    checked = check_det_dataset(str(ds.yaml_path), autodownload=False)
    assert Path(checked["train"]).resolve() == Path(data["train"]).resolve()
    labels = img2label_paths(_lines(data["train"]) + _lines(data["val"]))
    assert all(Path(lbl).is_file() for lbl in labels)


def test_a_cvat_zip_with_a_top_folder_and_a_named_yaml(train_module, tmp_path):
    src = tmp_path / "src"
    generate_dataset(src, n_train=6, n_val=0, imgsz=32, layout="cvat")
    (src / "data.yaml").rename(src / "my_dataset.yaml")
    channel = tmp_path / "channel"
    channel.mkdir()
    with zipfile.ZipFile(channel / "v1.zip", "w") as zf:
        for f in sorted(src.rglob("*")):
            if f.is_file():
                zf.write(f, Path("export") / f.relative_to(src))
    ds = train_module.prepare_dataset(channel, tmp_path / "work")
    assert ds.n_train + ds.n_val == 6 and ds.n_val >= 1
    assert str(ds.root).startswith(str(tmp_path / "work"))


def test_val_fraction_comes_from_the_hyperparameters(train_module, tmp_path):
    generate_dataset(tmp_path / "src", n_train=40, n_val=0, imgsz=32, layout="ultralytics", seed=4)
    cfg = train_module.parse_hyperparameters({"val_fraction": "0.5"})
    ds = train_module.prepare_dataset(tmp_path / "src", tmp_path / "work", cfg.val_fraction)
    report = validate_local_dataset(tmp_path / "src", val_fraction=0.5)
    assert (ds.n_train, ds.n_val) == (report.auto_split.train, report.auto_split.val)
    with pytest.raises(train_module.JobFailure, match="val_fraction must be in"):
        train_module.parse_hyperparameters({"val_fraction": "1.5"})
    with pytest.raises(train_module.JobFailure, match="split 'val' has no images"):
        train_module.prepare_dataset(tmp_path / "src", tmp_path / "work0", 0.0)


@pytest.mark.parametrize(("mutate", "expected"), [
    (lambda r: (r / "classes.txt").unlink(), "unsupported dataset layout: no dataset YAML"),
    (lambda r: (r / "images").rename(r / "pictures"), "no images/ folder next to it"),
])
def test_unsupported_layouts_fail_with_the_reason(train_module, tmp_path, mutate, expected):
    generate_dataset(tmp_path, n_train=4, n_val=0, imgsz=32, layout="label_studio")
    mutate(tmp_path)
    with pytest.raises(train_module.JobFailure, match=expected):
        train_module.prepare_dataset(tmp_path, tmp_path / "work")


def test_every_label_is_checked_before_training_and_the_first_problems_named(train_module, tmp_path):
    """What the Lambda's 50-label sample may miss: the job stops before its first epoch, naming the rows."""
    src = tmp_path / "src"
    generate_dataset(src, n_train=12, n_val=4, imgsz=32, layout="roboflow")
    (src / "train/labels/train_00003.txt").write_text("0 0.5 0.5 0.1 0.1\n7 0.5 0.5 0.1 0.1\n")
    (src / "valid/labels/val_00001.txt").write_text("0 0.5 1.5 0.1 0.1\n")
    (src / "valid/labels/val_00002.txt").write_text("0 0.5 0.1\n")
    with pytest.raises(train_module.JobFailure) as err:
        train_module.prepare_dataset(src, tmp_path / "work")
    msg = str(err.value)
    assert msg.startswith("dataset rejected before training: 3 broken label rows")
    assert "train/labels/train_00003.txt line 2: class id 7 is not in 0..2" in msg
    assert "valid/labels/val_00001.txt line 1: coordinates must be normalised" in msg
    assert "valid/labels/val_00002.txt line 1: 3 values" in msg


def _train(base: Path, tmp: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items()
           if k not in {"SM_CHANNEL_TRAIN", "SM_CHANNEL_WEIGHTS", "DATASET_ROOT", "BASE_WEIGHTS", "WANDB_SECRET_ARN"}}
    env.update(SAGEMAKER_BASE_DIR=str(base), YOLO_CONFIG_DIR=str(tmp / "ultralytics"), MPLCONFIGDIR=str(tmp / "mpl"),
               YOLO_OFFLINE="1")
    return subprocess.run([sys.executable, str(TRAIN_PY)], env=env, capture_output=True, text=True, timeout=300)


def _base(tmp: Path, layout: str, n_val: int) -> Path:
    base = tmp / "ml"
    (base / "input" / "config").mkdir(parents=True)
    (base / "input" / "config" / "hyperparameters.json").write_text(json.dumps(
        {"model": "yoloops-tiny.yaml", "epochs": "1", "imgsz": "32", "batch": "8", "warmup_epochs": "0",
         "mosaic": "0", "close_mosaic": "0", "val_fraction": "0.2"}))
    generate_dataset(base / "input" / "data" / "train", n_train=16, n_val=n_val, imgsz=32, layout=layout, seed=1)
    return base


@pytest.mark.slow
def test_a_label_studio_export_without_val_trains_one_epoch(tmp_path):
    """The layout furthest from Ultralytics' own (no YAML, no splits) trains as uploaded."""
    base = _base(tmp_path, "label_studio", 0)
    proc = _train(base, tmp_path)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "dataset layout label_studio; no val split, so" in proc.stdout + proc.stderr
    metrics = json.loads((base / "model" / "metrics.json").read_text())
    assert metrics["epochs_run"] == 1 and (base / "model" / "best.pt").stat().st_size > 0


def test_a_broken_label_fails_the_job_before_training(tmp_path):
    base = _base(tmp_path, "cvat", 4)
    (base / "input/data/train/labels/train/train_00009.txt").write_text("5 0.5 0.5 0.1 0.1\n")
    proc = _train(base, tmp_path)
    assert proc.returncode != 0
    failure = (base / "output" / "failure").read_text()
    assert "dataset rejected before training: 1 broken label rows" in failure
    assert "labels/train/train_00009.txt line 1: class id 5 is not in 0..2" in failure
    assert not (base / "checkpoints" / "last.pt").exists()


def test_a_roboflow_export_naming_folders_it_lacks_is_split_like_the_report(train_module, tmp_path):
    generate_dataset(tmp_path / "src", n_train=20, n_val=0, imgsz=32, layout="roboflow", seed=6)
    (tmp_path / "src" / "data.yaml").write_text("train: ../train/images\nval: ../valid/images\n"
                                                "test: ../test/images\nnc: 3\nnames: [circle, square, triangle]\n")
    report = validate_local_dataset(tmp_path / "src")
    ds = train_module.prepare_dataset(tmp_path / "src", tmp_path / "work")
    assert (ds.n_train, ds.n_val) == (report.auto_split.train, report.auto_split.val)
    assert "test" not in yaml.safe_load(ds.yaml_path.read_text())
