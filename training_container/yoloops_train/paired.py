"""Paired evaluation: the challenger and the current champion, same validator settings, same images.

After training, best.pt (the challenger) and the champion's best.pt (channel `champion`, put there by the plan)
are scored on this version's val split and, when the dataset has one, its test split (the team's regression
set: normalize() never trains on it and Ultralytics picks best.pt on val). Both runs share imgsz, batch, conf,
iou and the image list; `images_sha256` names the images. Class lists may differ: classes match by name, and
the champion is scored on a view of the labels remapped to its own class ids (classes it does not know
dropped), so its per-class AP is right for every class both know. A champion file that is missing or cannot
be loaded as a detector never fails the job: its status and reason are recorded and the verdict says so.

Also computed here: the F1-optimal confidence thresholds of the challenger on val (metrics.json "thresholds",
model.json and DEPLOY.md). The champion file is our own pipeline's best.pt (models/ in the artifacts bucket),
so loading it with Ultralytics (a pickle) trusts it as much as the base weights channel.
"""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path
from typing import Any

from .common import JobFailure, log
from .labelcheck import label_for

CHAMPION_ENV = "SM_CHANNEL_CHAMPION"
# Ultralytics' validation defaults: mAP integrates over every confidence, so conf stays at its floor
VAL_CONF, VAL_IOU = 0.001, 0.7


def champion_channel(base: Path, env: dict[str, str] | None = None) -> Path:
    env = dict(os.environ if env is None else env)
    return Path(env.get(CHAMPION_ENV) or Path(base) / "input" / "data" / "champion")


def split_images(yaml_path: Path) -> dict[str, list[Path]]:
    """The images of val and test as the normalized data.yaml lists them (absolute paths, one per line)."""
    import yaml

    data = yaml.safe_load(Path(yaml_path).read_text())
    out: dict[str, list[Path]] = {}
    for split in ("val", "test"):
        ref = data.get(split)
        if isinstance(ref, str) and Path(ref).is_file():
            out[split] = [Path(line) for line in Path(ref).read_text().splitlines() if line.strip()]
    return out


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def images_digest(images: list[Path], root: Path) -> str:
    """sha256 over the sorted lines `<relpath>\\t<content sha256>\\n` of a split's images (relpath to the root)."""
    rows = sorted((p.relative_to(root).as_posix() if p.is_relative_to(root) else p.as_posix(), file_sha256(p))
                  for p in images)
    return hashlib.sha256("".join(f"{r}\t{s}\n" for r, s in rows).encode()).hexdigest()


def label_counts(images: list[Path], names: list[str]) -> tuple[dict[str, int], dict[str, int], int]:
    """(instances per class, images per class, instances) from the split's label files, by class name."""
    inst = dict.fromkeys(names, 0)
    imgs = dict.fromkeys(names, 0)
    for image in images:
        label = label_for(image)
        if not label.is_file():
            continue
        seen = set()
        for line in label.read_text().splitlines():
            parts = line.split()
            if parts and 0 <= int(float(parts[0])) < len(names):
                name = names[int(float(parts[0]))]
                inst[name] += 1
                seen.add(name)
        for name in seen:
            imgs[name] += 1
    return inst, imgs, sum(inst.values())


def remapped_view(images: list[Path], root: Path, names: list[str], target: list[str], out: Path) -> Path:
    """A copy of the split for a model whose classes are `target`: images linked, labels rewritten to target's
    ids (by name; rows of classes target lacks dropped). Returns the image-list file."""
    index = {n: i for i, n in enumerate(target)}
    listed = []
    for image in images:
        rel = image.relative_to(root) if image.is_relative_to(root) else Path(image.name)
        dest = out / "images" / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        if not dest.exists():
            os.symlink(image, dest)
        rows = []
        src = label_for(image)
        if src.is_file():
            for line in src.read_text().splitlines():
                parts = line.split()
                if parts and names[int(float(parts[0]))] in index:
                    rows.append(" ".join([str(index[names[int(float(parts[0]))]]), *parts[1:]]))
        label = label_for(dest)
        label.parent.mkdir(parents=True, exist_ok=True)
        label.write_text("".join(f"{r}\n" for r in rows))
        listed.append(str(dest))
    lst = out / "images.txt"
    lst.write_text("".join(f"{p}\n" for p in listed))
    return lst


def _eval_yaml(path: Path, images_list: Path, names: list[str]) -> Path:
    import yaml

    path.parent.mkdir(parents=True, exist_ok=True)
    # train is required by Ultralytics' dataset check; validation reads only val
    path.write_text(yaml.safe_dump({"path": str(images_list.parent), "train": str(images_list),
                                    "val": str(images_list), "names": dict(enumerate(names)), "nc": len(names)},
                                   sort_keys=False))
    return path


def _validate(model, data: Path, settings: dict[str, Any], device: str, project: Path, name: str):
    return model.val(data=str(data), split="val", imgsz=settings["imgsz"], batch=settings["batch"],
                     conf=settings["conf"], iou=settings["iou"], device=device, plots=False, verbose=False,
                     project=str(project), name=name, exist_ok=True)


def scores(metrics, names: list[str]) -> dict[str, Any]:
    """Overall and per-class figures of one Ultralytics validation (DetMetrics), per class keyed by name and
    listing only the classes with instances in the split."""
    from .outputs import metric_values

    box = metrics.box
    counts = list(getattr(metrics, "nt_per_class", None) if getattr(metrics, "nt_per_class", None) is not None
                  else [])
    per_class = {}
    for row, c in enumerate(list(box.ap_class_index)):
        c = int(c)
        n = int(counts[c]) if c < len(counts) else 0
        if n and c < len(names):
            per_class[names[c]] = {"mAP50-95": round(float(box.all_ap[row].mean()), 6),
                                   "mAP50": round(float(box.all_ap[row, 0]), 6), "instances": n}
    return {**{k: round(v, 6) for k, v in metric_values(metrics.results_dict).items()}, "per_class": per_class}


def thresholds(metrics, names: list[str]) -> dict[str, Any]:
    """F1-optimal confidence on the validator's curves: overall where Ultralytics' ap_per_class picks it (the
    argmax of the smoothed mean F1 curve over classes), and per class the argmax of that class's F1 curve."""
    import numpy as np
    from ultralytics.utils.metrics import smooth

    box = metrics.box
    f1 = np.asarray(box.f1_curve)
    px = np.asarray(box.px)
    if f1.size == 0 or f1.ndim != 2:
        return {"overall": {"conf": 0.0, "f1": 0.0}, "per_class": {}}
    i = int(smooth(f1.mean(0), 0.1).argmax())
    per_class = {}
    for row, c in enumerate(list(box.ap_class_index)):
        if int(c) < len(names):
            j = int(f1[row].argmax())
            per_class[names[int(c)]] = {"conf": round(float(px[j]), 4), "f1": round(float(f1[row, j]), 4)}
    return {"overall": {"conf": round(float(px[i]), 4), "f1": round(float(f1.mean(0)[i]), 4)},
            "per_class": per_class}


def load_champion(channel: Path) -> tuple[str, str | None, Any, list[str]]:
    """(status, reason, YOLO model or None, class names): 'paired' when it loads as a detector."""
    if not channel.exists():
        return "none", None, None, []
    pts = sorted(p for p in channel.rglob("*.pt") if p.is_file()) if channel.is_dir() else [channel]
    if not pts:
        return "missing", f"no .pt file in the champion channel {channel}", None, []
    if len(pts) > 1:
        return "unreadable", f"{len(pts)} .pt files in the champion channel; expected one", None, []
    try:
        from ultralytics import YOLO

        model = YOLO(str(pts[0]))
    except Exception as e:  # a torch load error, a truncated file, not a checkpoint at all
        return "unreadable", f"{pts[0].name}: {type(e).__name__}: {str(e)[:300]}", None, []
    if getattr(model, "task", None) != "detect":
        return "unreadable", f"{pts[0].name} is not a detection model (task {getattr(model, 'task', None)!r})", \
            None, []
    names = [str(model.names[i]) for i in sorted(model.names)]
    return "paired", None, model, names


def evaluate_pair(challenger: Path, yaml_path: Path, root: Path, names: list[str], work: Path, *,
                  imgsz: int, batch: int, device: str, champion_dir: Path | None,
                  champion_run_id: str | None = None) -> dict[str, Any]:
    """metrics.json's "evaluation" and "thresholds" (training_container/README.md, docs/architecture.md)."""
    from ultralytics import YOLO

    settings = {"imgsz": int(imgsz), "batch": int(batch), "conf": VAL_CONF, "iou": VAL_IOU}
    splits = split_images(yaml_path)
    if "val" not in splits:
        raise JobFailure(f"paired evaluation: {yaml_path} has no val image list")
    out = work / "paired"
    t0 = time.perf_counter()
    status, reason, champ, champ_names = ("none", None, None, []) if champion_dir is None else \
        load_champion(champion_dir)
    load_s = time.perf_counter() - t0
    if status != "paired":
        log(f"paired evaluation: champion {status}" + (f" ({reason})" if reason else ""))
    model = YOLO(str(challenger))
    result: dict[str, Any] = {}
    champ_s = load_s
    threshold = None
    for split, images in splits.items():
        inst, imgs, total = label_counts(images, names)
        entry: dict[str, Any] = {"images": len(images), "instances": total, "images_sha256": images_digest(images, root),
                                 "instances_per_class": inst, "images_per_class": imgs}
        view = _eval_yaml(out / f"{split}-challenger.yaml", _list_file(out / f"{split}-images.txt", images), names)
        t = time.perf_counter()
        m = _validate(model, view, settings, device, out, f"{split}-challenger")
        entry["challenger"] = scores(m, names)
        entry["challenger"]["seconds"] = round(time.perf_counter() - t, 2)
        if split == "val":
            threshold = thresholds(m, names)
        if status == "paired":
            t = time.perf_counter()
            try:
                lst = remapped_view(images, root, names, champ_names, out / f"{split}-champion")
                cm = _validate(champ, _eval_yaml(out / f"{split}-champion.yaml", lst, champ_names), settings,
                               device, out, f"{split}-champion")
                entry["champion"] = scores(cm, champ_names)
            except Exception as e:  # the champion cannot be scored: record it, never fail the challenger's job
                status, reason = "unreadable", f"validation failed: {type(e).__name__}: {str(e)[:300]}"
                log(f"paired evaluation: champion {reason}")
                for s in result.values():  # no half-paired evaluation: the verdict falls back as a whole
                    s.pop("champion", None)
                    s.pop("shared_classes", None)
                    s["challenger"].pop("shared_mAP50-95", None)
                    s["challenger"].pop("shared_mAP50", None)
            champ_s += time.perf_counter() - t
            if "champion" in entry:
                _shared(entry)
                log(f"paired evaluation on {split} ({len(images)} images): challenger mAP50-95 "
                    f"{entry['challenger']['mAP50-95']:.4f}, champion {entry['champion']['mAP50-95']:.4f} "
                    f"({time.perf_counter() - t:.1f} s for the champion)")
        result[split] = entry
    champion = {"status": status, "reason": reason, "run_id": champion_run_id or None, "names": champ_names,
                "seconds": round(champ_s, 2) if status == "paired" else round(load_s, 2)}
    log(f"paired evaluation done in {time.perf_counter() - t0:.1f} s; champion {status}, "
        f"{champion['seconds']} s of it for the champion")
    return {"evaluation": {"settings": settings, "champion": champion, "splits": result},
            "thresholds": threshold or {"overall": {"conf": 0.0, "f1": 0.0}, "per_class": {}}}


def _list_file(path: Path, images: list[Path]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{p}\n" for p in images))
    return path


def _shared(entry: dict[str, Any]) -> None:
    """Classes both models were scored on (instances in this split), and each model's mean over them."""
    a, b = entry["challenger"]["per_class"], entry["champion"]["per_class"]
    shared = sorted(set(a) & set(b))
    entry["shared_classes"] = shared
    for who, pc in (("challenger", a), ("champion", b)):
        for key in ("mAP50-95", "mAP50"):
            entry[who][f"shared_{key}"] = round(sum(pc[n][key] for n in shared) / len(shared), 6) if shared else None


def paired_evaluation(paths, cfg, ds, speed: dict[str, Any]) -> dict[str, Any]:
    """The job's call: best.pt (else last.pt) against the champion channel, on one device, per-process batch."""
    from .throughput import world_size

    ckpt = paths.checkpoints
    best = ckpt / "best.pt" if (ckpt / "best.pt").exists() else ckpt / "last.pt"
    channel = champion_channel(paths.base)
    result = evaluate_pair(best, ds.yaml_path, ds.tree or ds.root, ds.names, paths.work, imgsz=cfg.imgsz,
                           batch=max(1, int(speed["batch"]) // world_size(speed)),
                           device=str(speed["device"]).split(",")[0], champion_dir=channel,
                           champion_run_id=cfg.champion_run_id)
    champ = result["evaluation"]["champion"]
    if champ["status"] == "none" and cfg.champion_run_id:  # the plan named a champion but its file never came
        champ.update(status="missing", reason=f"champion {cfg.champion_run_id} named, but no channel at {channel}")
    return result
