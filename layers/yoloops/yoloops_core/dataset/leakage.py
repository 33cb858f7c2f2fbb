"""No self-grading: val/test images that are train images, and upload files Ultralytics or torch would unpickle.

A model scored on images it trained on looks better than it is, and a champion chosen that way can never be
beaten honestly; so the overlap is reported, and a val split that is mostly train images rejects the dataset.
"""

from __future__ import annotations

import posixpath

from yoloops_core.dataset.report import DatasetReport, ProblemCollector

# More than this share of val in train: the dataset grades itself, so it is rejected.
MOSTLY_TRAIN = 0.5
EXAMPLES = 5
# Ultralytics np.load(allow_pickle=True)s `<labels dir>.cache`; torch.load unpickles .pt/.pth; numpy .npy/.npz
# may hold pickles. The job never loads such files from an upload; the report says they were ignored.
PICKLE_SUFFIXES = (".cache", ".npy", ".npz", ".pt", ".pth", ".pkl", ".pickle")


def in_train(train: dict[str, str], images: dict[str, str]) -> list[str]:
    """Images of another split that are train images: the same path, or the same content fingerprint."""
    train_content = {fp for fp in train.values() if fp}
    return sorted(p for p, fp in images.items() if p in train or (fp and fp in train_content))


def check_overlap(index: dict[str, dict[str, str]], report: DatasetReport, problems: ProblemCollector) -> None:
    train = index.get("train") or {}
    for split in ("val", "test"):
        images = index.get(split) or {}
        if not images or not train:
            continue
        shared = in_train(train, images)
        report.overlap_with_train[split] = len(shared)
        if not shared:
            continue
        examples = ", ".join(shared[:EXAMPLES]) + (" ..." if len(shared) > EXAMPLES else "")
        share = len(shared) / len(images)
        text = (f"{len(shared)} of {len(images)} {split} images are also train images (same file or same "
                f"content): {examples}")
        if split == "val" and share > MOSTLY_TRAIN:
            problems.error("val_is_train", text + f". More than {MOSTLY_TRAIN:.0%} of val is train, so the model "
                           "would grade itself on what it learned and its score would mean nothing: give val its "
                           "own images (or drop val and let yoloops split it off train)")
        else:
            problems.warning(f"{split}_overlaps_train", text + f"; they inflate the {split} score")


def check_pickles(paths: list[str], problems: ProblemCollector, key_for) -> None:
    for path in paths:
        if posixpath.basename(path).lower().endswith(PICKLE_SUFFIXES):
            problems.warning("pickle_file_ignored", "a file Ultralytics or torch would unpickle: the training job "
                             "never loads it (only the YAML, images and labels reach Ultralytics)", key_for(path))
