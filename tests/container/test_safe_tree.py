"""Only the dataset YAML, images and labels reach Ultralytics (issue 16 item 5).

Ultralytics loads `<labels dir>.cache` with np.load(allow_pickle=True): a pickled cache in an upload would run
inside the job. The payload below writes a marker file when unpickled; it is shown live first, then the
dataset is prepared as the job prepares it and Ultralytics builds its datasets from that: the marker never
appears. The real job on a poisoned upload is in test_paired_eval.py (one run serves both).
"""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import yaml
from container_helpers import Payload, poison

from yoloops.synth import generate_dataset


@pytest.mark.parametrize("layout", ["ultralytics", "roboflow", "cvat"])
def test_pickled_caches_in_an_upload_are_never_loaded(train_module, tmp_path, layout, monkeypatch):
    monkeypatch.setenv("YOLO_OFFLINE", "1")
    monkeypatch.setenv("YOLO_CONFIG_DIR", str(tmp_path / "ucfg"))
    from ultralytics.data.dataset import YOLODataset
    from ultralytics.data.utils import check_det_dataset, load_dataset_cache_file

    src, marker = tmp_path / "src", tmp_path / "PWNED"
    generate_dataset(src, n_train=4, n_val=2, n_test=2, imgsz=32, layout=layout, seed=1)
    planted = poison(src, marker)
    assert planted
    with pytest.raises(Exception):  # noqa: B017 - the payload runs, then Ultralytics finds no dict in it
        load_dataset_cache_file(planted[0])
    assert marker.exists(), "the payload is live: loading it the way Ultralytics does runs it"
    marker.unlink()

    ds = train_module.prepare_dataset(src, tmp_path / "work")
    data = check_det_dataset(str(ds.yaml_path), autodownload=False)
    for split in ("train", "val", "test"):
        images = Path(data[split]).read_text().split()
        assert images and all(Path(p).is_relative_to(ds.tree) for p in images)
        built = YOLODataset(img_path=data[split], data=data, imgsz=32, augment=False, task="detect")
        assert len(built.labels) == len(images)
    assert not marker.exists()
    # Ultralytics did look for its caches, in the job's tree: it wrote its own there
    assert list(ds.tree.rglob("*.cache"))
    # nothing but images and label files was put in the tree
    suffixes = {p.suffix for p in ds.tree.rglob("*") if p.is_file() and p.suffix != ".cache"}
    assert suffixes == {".jpg", ".txt"}
    assert yaml.safe_load(ds.yaml_path.read_text())["path"] == str(ds.tree)


def test_a_restart_reuses_only_the_label_caches_this_job_saved(train_module, tmp_path):
    from yoloops_train.safetree import restore_caches, save_caches

    dirs = [tmp_path / "tree" / "labels" / "train", tmp_path / "tree" / "labels" / "val"]
    for d in dirs:
        d.mkdir(parents=True)
        d.with_suffix(".cache").write_bytes(b"scan of " + d.name.encode())
    store = tmp_path / "checkpoints" / "label_cache"
    save_caches(dirs, store)
    for d in dirs:
        d.with_suffix(".cache").unlink()
    saved = sorted(p for p in store.iterdir() if p.suffix == ".cache")
    assert len(saved) == 2
    saved[1].write_bytes(pickle.dumps(Payload(tmp_path / "PWNED")))  # swapped in the checkpoint prefix
    refused = restore_caches(dirs, store)
    assert refused == [saved[1].name]
    assert dirs[0].with_suffix(".cache").read_bytes() == b"scan of train"
    assert not dirs[1].with_suffix(".cache").exists()
    # a cache the job never recorded is refused too
    (store / "hashes.json").unlink()
    dirs[0].with_suffix(".cache").unlink()
    assert len(restore_caches(dirs, store)) == 2 and not dirs[0].with_suffix(".cache").exists()


def test_checkpoint_seals_accept_only_recorded_content(tmp_path):
    from yoloops_train.seals import KEEP, read_seals, seal, trusted

    ckpt = tmp_path / "checkpoints"
    ckpt.mkdir()
    (ckpt / "last.pt.partial").write_bytes(b"epoch 1")
    seal(ckpt, {"last.pt": ckpt / "last.pt.partial"})  # recorded under the name it is renamed to
    (ckpt / "last.pt.partial").rename(ckpt / "last.pt")
    assert trusted(ckpt / "last.pt")
    (ckpt / "last.pt").write_bytes(b"swapped")
    assert not trusted(ckpt / "last.pt") and not trusted(ckpt / "best.pt")
    for i in range(KEEP + 2):  # a kill between recording and renaming keeps the previous file trusted
        (ckpt / "x").write_bytes(f"epoch {i}".encode())
        seal(ckpt, {"last.pt": ckpt / "x"})
    assert len(read_seals(ckpt)["last.pt"]) == KEEP
    (ckpt / "copy").write_bytes(f"epoch {KEEP}".encode())
    assert trusted(ckpt / "copy", "last.pt") and not trusted(ckpt / "copy")
