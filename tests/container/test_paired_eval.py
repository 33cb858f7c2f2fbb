"""Paired evaluation (issue 16): the challenger and the champion scored on the same images, with the same
validator settings, classes matched by name; a missing or unreadable champion never fails the job.

One real job (1 epoch of the tiny model) trains a challenger on [circle, square, triangle] with a test split,
while the champion channel holds a model trained on [square, circle] (other ids, one class fewer).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import pickle
import shutil
from pathlib import Path

import pytest
import yaml
from container_helpers import Payload, load_train_module, poison

from yoloops.synth import generate_dataset

CHAMPION_CLASSES = ["square", "circle"]  # ids differ from the challenger's: square 0 here, 1 there
HP = {"model": "yoloops-tiny.yaml", "epochs": "1", "imgsz": "64", "batch": "16", "optimizer": "SGD",
      "lr0": "0.05", "warmup_epochs": "0", "mosaic": "0", "close_mosaic": "0", "champion_run_id": "shapes-v1-a1",
      "dataset_version": "v2", "base_weights_key": "models/shapes/shapes-v1-a1/best.pt"}


def _ultralytics_env(mp: pytest.MonkeyPatch, tmp: Path) -> None:
    mp.setenv("YOLO_OFFLINE", "1")
    mp.setenv("YOLO_CONFIG_DIR", str(tmp / "ultralytics-config"))
    mp.setenv("MPLCONFIGDIR", str(tmp / "mpl"))


@pytest.fixture(scope="module")
def champion_pt(tmp_path_factory) -> Path:
    """A champion of OUR pipeline's shape: an Ultralytics best.pt of the tiny model, trained on two classes."""
    tmp = tmp_path_factory.mktemp("champion")
    data = generate_dataset(tmp / "data", n_train=128, n_val=8, imgsz=64, seed=5, classes=CHAMPION_CLASSES,
                            object_size=(0.3, 0.5))
    with pytest.MonkeyPatch.context() as mp:
        _ultralytics_env(mp, tmp)
        mod = load_train_module()
        from yoloops_train.offline import make_offline, patch_ultralytics

        make_offline(tmp / "ultralytics-config")
        patch_ultralytics(tmp / "ultralytics-config")
        from ultralytics import YOLO

        model = YOLO(str(Path(mod.__file__).parents[1] / "yoloops-tiny.yaml"))
        # ~200 SGD steps: measured mAP50 0.24 on its own val (circle learned, square not yet), ~10 s idle
        model.train(data=str(data), epochs=6, imgsz=64, batch=4, optimizer="SGD", lr0=0.05, warmup_epochs=0,
                    mosaic=0, close_mosaic=0, workers=0, device="cpu", plots=False, val=False, verbose=False,
                    project=str(tmp), name="run", exist_ok=True, seed=0, deterministic=True)
    return tmp / "run" / "weights" / "last.pt"


@pytest.fixture(scope="module")
def paired_job(tmp_path_factory, champion_pt):
    tmp = tmp_path_factory.mktemp("paired")
    base = tmp / "ml"
    (base / "input" / "config").mkdir(parents=True)
    (base / "input" / "config" / "hyperparameters.json").write_text(json.dumps(HP))
    channel = base / "input" / "data" / "train"
    generate_dataset(channel, n_train=48, n_val=12, n_test=10, imgsz=64, seed=6, object_size=(0.3, 0.5))
    marker = tmp / "PWNED"
    planted = poison(channel, marker)  # pickled label caches in the upload (test_safe_tree.py shows them live)
    # a checkpoint folder seeded with files this job never wrote: pickles that would run the payload
    ckpt = base / "checkpoints"
    ckpt.mkdir(parents=True)
    for name in ("last.pt", "best.pt", "last.committed.pt"):
        (ckpt / name).write_bytes(pickle.dumps(Payload(marker)))
    (ckpt / "yoloops-done.json").write_text('{"finished_at": 0, "metrics": {}}')
    champ_dir = base / "input" / "data" / "champion"
    champ_dir.mkdir(parents=True)
    shutil.copy2(champion_pt, champ_dir / "best.pt")
    with pytest.MonkeyPatch.context() as mp:
        _ultralytics_env(mp, tmp)
        mp.setenv("SAGEMAKER_BASE_DIR", str(base))
        for k in ("SM_CHANNEL_TRAIN", "SM_CHANNEL_WEIGHTS", "SM_CHANNEL_CHAMPION", "DATASET_ROOT", "BASE_WEIGHTS",
                  "WANDB_SECRET_ARN"):
            mp.delenv(k, raising=False)
        mod = load_train_module()
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            rc = mod.main([])
    assert rc == 0, (base / "output" / "failure").read_text()
    for cache in planted:  # the images_sha256 / instance checks below read the upload as it was
        cache.unlink(missing_ok=True)
    for extra in [*channel.rglob("*.npy"), *channel.rglob("*.pkl"), *channel.rglob("*.pt")]:
        extra.unlink()
    return {"base": base, "channel": channel, "champion": champ_dir / "best.pt", "marker": marker,
            "planted": planted,
            "metrics": json.loads((base / "model" / "metrics.json").read_text())}


def _digest(images: list[Path], root: Path) -> str:
    rows = sorted((p.relative_to(root).as_posix(), hashlib.sha256(p.read_bytes()).hexdigest()) for p in images)
    return hashlib.sha256("".join(f"{r}\t{s}\n" for r, s in rows).encode()).hexdigest()


def _independent_val(model_pt: Path, channel: Path, split: str, names: list[str], target: list[str], out: Path,
                     settings: dict):
    """What the champion scores on the split, computed here from the upload without the job's code."""
    from ultralytics import YOLO

    index = {n: i for i, n in enumerate(target)}
    for image in sorted((channel / "images" / split).glob("*.jpg")):
        (out / "images").mkdir(parents=True, exist_ok=True)
        (out / "labels").mkdir(parents=True, exist_ok=True)
        shutil.copy2(image, out / "images" / image.name)
        rows = [ln.split() for ln in (channel / "labels" / split / f"{image.stem}.txt").read_text().splitlines()]
        kept = [" ".join([str(index[names[int(r[0])]]), *r[1:]]) for r in rows if r and names[int(r[0])] in index]
        (out / "labels" / f"{image.stem}.txt").write_text("".join(f"{k}\n" for k in kept))
    (out / "data.yaml").write_text(yaml.safe_dump({"path": str(out), "train": "images", "val": "images",
                                                   "names": dict(enumerate(target))}))
    return YOLO(str(model_pt)).val(data=str(out / "data.yaml"), split="val", plots=False, verbose=False,
                                   device="cpu", project=str(out), name="v", exist_ok=True, **settings)


@pytest.mark.slow
def test_champion_and_challenger_are_scored_on_the_same_images(paired_job, tmp_path):
    m, channel = paired_job["metrics"], paired_job["channel"]
    ev = m["evaluation"]
    settings = ev["settings"]
    assert settings == {"imgsz": 64, "batch": 16, "conf": 0.001, "iou": 0.7}
    assert ev["champion"]["status"] == "paired" and ev["champion"]["reason"] is None
    assert ev["champion"]["run_id"] == "shapes-v1-a1" and ev["champion"]["names"] == CHAMPION_CLASSES
    assert ev["champion"]["seconds"] > 0
    names = ["circle", "square", "triangle"]
    assert set(ev["splits"]) == {"val", "test"}  # the dataset's test split is scored too
    for split, n in (("val", 12), ("test", 10)):
        s = ev["splits"][split]
        images = sorted((channel / "images" / split).glob("*.jpg"))
        assert s["images"] == n == len(images)
        assert s["images_sha256"] == _digest(images, channel)  # the very images of the upload's split
        rows = [ln.split()[0] for p in (channel / "labels" / split).glob("*.txt") for ln in p.read_text().splitlines()]
        assert s["instances"] == len(rows) and sum(s["instances_per_class"].values()) == len(rows)
        assert s["instances_per_class"] == {c: rows.count(str(i)) for i, c in enumerate(names)}
        for who in ("challenger", "champion"):
            for key in ("mAP50", "mAP50-95", "precision", "recall"):
                assert 0.0 <= s[who][key] <= 1.0
        # per class by NAME; the champion knows no triangle, so it has no AP for it
        assert set(s["challenger"]["per_class"]) == {c for c in names if s["instances_per_class"][c]}
        assert set(s["champion"]["per_class"]) == {c for c in CHAMPION_CLASSES if s["instances_per_class"][c]}
        assert s["shared_classes"] == sorted(set(s["champion"]["per_class"]))
        for c, v in s["champion"]["per_class"].items():
            assert v["instances"] == s["instances_per_class"][c]
        # the champion's numbers are what Ultralytics gives it on those images, labels mapped by name
        ind = _independent_val(paired_job["champion"], channel, split, names, CHAMPION_CLASSES,
                               tmp_path / f"{split}-independent", settings)
        assert s["champion"]["mAP50-95"] == pytest.approx(float(ind.box.map), abs=1e-4)
        assert s["champion"]["mAP50"] == pytest.approx(float(ind.box.map50), abs=1e-4)
        for row, c in enumerate(ind.box.ap_class_index):
            got = s["champion"]["per_class"][CHAMPION_CLASSES[int(c)]]["mAP50-95"]
            assert got == pytest.approx(float(ind.box.ap[row]), abs=1e-4)
    # the champion learned something: the comparison is not between zeros
    assert ev["splits"]["val"]["champion"]["mAP50"] > 0.05, ev["splits"]["val"]["champion"]
    # the test split was never trained on, nor validated on to pick best.pt
    data = yaml.safe_load((paired_job["base"] / "tmp" / "data.yaml").read_text())
    trained_on = set(Path(data["train"]).read_text().split()) | set(Path(data["val"]).read_text().split())
    assert not any("/images/test/" in p for p in trained_on)
    # top-level keys unchanged: the challenger's val figures
    assert set(m["per_class_mAP50-95"]) == set(names)


@pytest.mark.slow
def test_thresholds_and_model_json_name_the_data_and_base_weights(paired_job):
    m = paired_job["metrics"]
    th = m["thresholds"]
    assert 0.0 <= th["overall"]["conf"] <= 1.0 and 0.0 <= th["overall"]["f1"] <= 1.0
    assert set(th["per_class"]) <= {"circle", "square", "triangle"} and th["per_class"]
    info = json.loads((paired_job["base"] / "model" / "model.json").read_text())
    assert info["training_data"]["dataset_version"] == "v2"
    assert info["base_weights"] == "models/shapes/shapes-v1-a1/best.pt"
    rc = info["recommended_confidence"]
    assert rc["overall"] == th["overall"] and rc["per_class"] == th["per_class"]
    deploy = (paired_job["base"] / "model" / "DEPLOY.md").read_text()
    assert f"score >= **{th['overall']['conf']:.3f}**" in deploy


@pytest.mark.parametrize("case", ["missing", "garbage", "classifier"])
def test_a_missing_or_unreadable_champion_is_recorded_not_fatal(paired_job, tmp_path, case):
    from yoloops_train.paired import evaluate_pair

    base = paired_job["base"]
    champ = tmp_path / "champion"
    champ.mkdir()
    if case == "garbage":
        (champ / "best.pt").write_bytes(b"not a checkpoint at all")
    elif case == "classifier":
        import torch

        torch.save({"model": None, "train_args": {"task": "classify"}}, champ / "best.pt")
    data = base / "tmp" / "data.yaml"
    names = ["circle", "square", "triangle"]
    tree = Path(yaml.safe_load(data.read_text())["path"])
    out = evaluate_pair(base / "model" / "best.pt", data, tree, names, tmp_path / "work", imgsz=64, batch=16,
                        device="cpu", champion_dir=champ, champion_run_id="shapes-v1-a1")
    ev = out["evaluation"]
    assert ev["champion"]["status"] == ("missing" if case == "missing" else "unreadable")
    assert ev["champion"]["reason"] and ev["champion"]["run_id"] == "shapes-v1-a1"
    assert all("champion" not in s for s in ev["splits"].values())
    # the challenger is still scored, on the same images as in the job
    job = paired_job["metrics"]["evaluation"]["splits"]
    for split in ("val", "test"):
        assert ev["splits"][split]["images_sha256"] == job[split]["images_sha256"]
        assert ev["splits"][split]["challenger"]["mAP50-95"] == pytest.approx(
            job[split]["challenger"]["mAP50-95"], abs=1e-6)
    if case == "garbage":
        assert "best.pt" in ev["champion"]["reason"]
    assert os.path.exists(base / "model" / "best.pt")


@pytest.mark.slow
def test_a_poisoned_upload_trains_normally_and_its_pickles_never_run(paired_job):
    """Pickled label caches beside every labels folder (labels/train.cache, labels.cache, train.cache):
    the job trained, validated and exported, and no payload ever ran."""
    assert paired_job["planted"] and not paired_job["marker"].exists()
    assert paired_job["metrics"]["epochs_run"] == 1
    assert (paired_job["base"] / "model" / "model.onnx").exists()


@pytest.mark.slow
def test_a_checkpoint_folder_seeded_with_foreign_files_is_not_loaded(paired_job):
    """last.pt, best.pt, a committed copy and a done marker the job never wrote (pickles with a payload):
    none is loaded, last.pt is set aside, the job trains from scratch, and what it leaves is sealed."""
    from yoloops_train.seals import trusted

    ckpt = paired_job["base"] / "checkpoints"
    assert not paired_job["marker"].exists()
    assert (ckpt / "last.pt.untrusted").exists() and not (ckpt / "last.committed.pt").exists()
    assert paired_job["metrics"]["epochs_run"] == 1 and paired_job["metrics"].get("retrained") is None
    assert trusted(ckpt / "last.pt") and trusted(ckpt / "best.pt")  # a restart may load these


def test_a_champion_named_by_the_plan_but_absent_is_missing(paired_job, tmp_path, monkeypatch):
    """The job's own call (paired_evaluation): champion_run_id set, no champion channel at all -> 'missing';
    without champion_run_id the same absence is 'none' (a first model)."""
    from yoloops_train.config import Paths, parse_hyperparameters
    from yoloops_train.dataset import PreparedDataset
    from yoloops_train.paired import CHAMPION_ENV, paired_evaluation

    base = paired_job["base"]
    monkeypatch.setenv(CHAMPION_ENV, str(tmp_path / "no-such-channel"))
    paths = Paths.from_env({"SAGEMAKER_BASE_DIR": str(base)})
    data = base / "tmp" / "data.yaml"
    ds = PreparedDataset(data, paired_job["channel"], ["circle", "square", "triangle"], 48, 12, 0, [],
                         Path(yaml.safe_load(data.read_text())["path"]))
    speed = {"device": "cpu", "batch": 16}
    named = paired_evaluation(paths, parse_hyperparameters({**HP, "epochs": "1"}), ds, speed)["evaluation"]
    assert named["champion"]["status"] == "missing" and "shapes-v1-a1" in named["champion"]["reason"]
    first = paired_evaluation(paths, parse_hyperparameters({"imgsz": "64"}), ds, speed)["evaluation"]
    assert first["champion"] == {"status": "none", "reason": None, "run_id": None, "names": [],
                                 "seconds": first["champion"]["seconds"]}
    assert first["splits"]["val"]["images_sha256"] == paired_job["metrics"]["evaluation"]["splits"]["val"][
        "images_sha256"]


def test_a_champion_that_fails_validation_leaves_no_half_paired_evaluation(paired_job, tmp_path, monkeypatch):
    from yoloops_train import paired

    real = paired._validate

    def flaky(model, data, settings, device, project, name):
        if name == "test-champion":  # val was paired, then the test split's champion run breaks
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        return real(model, data, settings, device, project, name)

    monkeypatch.setattr(paired, "_validate", flaky)
    base = paired_job["base"]
    data = base / "tmp" / "data.yaml"
    out = paired.evaluate_pair(base / "model" / "best.pt", data, Path(yaml.safe_load(data.read_text())["path"]),
                               ["circle", "square", "triangle"], tmp_path / "work", imgsz=64, batch=16,
                               device="cpu", champion_dir=paired_job["champion"].parent)["evaluation"]
    assert out["champion"]["status"] == "unreadable" and "illegal memory access" in out["champion"]["reason"]
    for s in out["splits"].values():
        assert "champion" not in s and "shared_classes" not in s and "shared_mAP50-95" not in s["challenger"]
