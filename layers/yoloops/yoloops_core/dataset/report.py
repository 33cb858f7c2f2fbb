"""The validation report: what a user reads before any GPU money is spent."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, computed_field

from yoloops_core.dataset.layouts import LAYOUT_TITLES

MAX_LISTED_PROBLEMS = 50  # the report lists the first N problems of each kind; counts cover all


class Problem(BaseModel):
    code: str  # stable machine-readable class of problem, e.g. "class_out_of_range"
    message: str
    key: str | None = None  # the file (S3 key, zip member or local path) the problem is in


class SplitStats(BaseModel):
    images: int = 0
    labels: int = 0  # images that have a non-empty label file
    backgrounds: int = 0  # images without a label file or with an empty one
    instances: int = 0


class AutoSplit(BaseModel):
    """The dataset had no validation split: this many images were moved to val by file-name hash."""

    fraction: float
    train: int
    val: int


class DatasetReport(BaseModel):
    source: str
    valid: bool
    task: Literal["detect", "segment"] | None = None
    layout: str | None = None  # ultralytics | roboflow | cvat | label_studio | yaml (layouts.LAYOUT_TITLES)
    yaml: str | None = None  # the dataset YAML, or the classes.txt of a YAML-less Label Studio export
    auto_split: AutoSplit | None = None
    # Label files whose contents were read here; "sampled" when the rest is left to the training job,
    # which checks every label before its first epoch.
    label_check: Literal["full", "sampled"] = "full"
    labels_checked: int = 0
    labels_total: int = 0
    nc: int | None = None
    names: list[str] = Field(default_factory=list)
    splits: dict[str, SplitStats] = Field(default_factory=dict)
    class_instances: dict[str, int] = Field(default_factory=dict)
    errors: list[Problem] = Field(default_factory=list)
    warnings: list[Problem] = Field(default_factory=list)
    error_count: int = 0
    warning_count: int = 0
    problem_counts: dict[str, int] = Field(default_factory=dict)
    files: int = 0
    bytes: int = 0
    # Images of val/test that are also train images (same path or same content): split -> count.
    overlap_with_train: dict[str, int] = Field(default_factory=dict)
    # split -> {image path: fingerprint}: the version's content record (runs/<run id>/data_index.json).
    # Not dumped: it can be large, and the report rides along the workflow state.
    index: dict[str, dict[str, str]] = Field(default_factory=dict, exclude=True)
    # (S3 key, size, ETag) of exactly the objects validated: the run trains these (yoloops_core.snapshot).
    objects: list[tuple[str, int, str]] = Field(default_factory=list, exclude=True)

    @computed_field  # in model_dump, so the notification (outcomes._report_text) carries it
    @property
    def summary(self) -> str:
        return self.summary_text()

    @computed_field  # read by outcomes.notify for the finished-run message
    @property
    def layout_note(self) -> str:
        """One line for a run's notification: which layout, and whether val was split off here."""
        parts = [f"layout: {LAYOUT_TITLES.get(self.layout, self.layout)}"] if self.layout else []
        if self.auto_split:
            parts.append(f"no validation split, so {self.auto_split.val} of "
                         f"{self.auto_split.train + self.auto_split.val} images were split off to val by "
                         f"file-name hash (ValFraction {self.auto_split.fraction:g}): train "
                         f"{self.auto_split.train} / val {self.auto_split.val}")
        return "; ".join(parts)

    def summary_text(self, max_problems: int = 10) -> str:
        """A readable multi-line report for the CLI and Slack."""
        verdict = "VALID" if self.valid else "REJECTED"
        lines = [f"Dataset {self.source}: {verdict} ({self.error_count} errors, {self.warning_count} warnings)"]
        if self.layout_note:
            lines.append(self.layout_note)
        if self.yaml:
            lines.append(f"yaml: {self.yaml}  task: {self.task or '?'}  nc: {self.nc}  files: {self.files}")
        if self.label_check == "sampled":
            lines.append(f"labels: {self.labels_checked} of {self.labels_total} label files read here (a sample); "
                         "the training job checks every label before its first epoch")
        for split, s in self.splits.items():
            lines.append(
                f"  {split:<5} images={s.images} labelled={s.labels} backgrounds={s.backgrounds} "
                f"instances={s.instances}"
            )
        if self.class_instances:
            top = sorted(self.class_instances.items(), key=lambda kv: -kv[1])
            lines.append("classes: " + ", ".join(f"{name}={n}" for name, n in top[:20]))
        for title, items, total in (("errors", self.errors, self.error_count), ("warnings", self.warnings, self.warning_count)):
            if not items:
                continue
            lines.append(f"{title} (first {min(len(items), max_problems)} of {total}):")
            for p in items[:max_problems]:
                where = f" [{p.key}]" if p.key else ""
                lines.append(f"  - {p.code}: {p.message}{where}")
        return "\n".join(lines)


class ProblemCollector:
    """Keeps the first problems of each severity and counts every one by code."""

    def __init__(self, limit: int = MAX_LISTED_PROBLEMS) -> None:
        self.limit = limit
        self.errors: list[Problem] = []
        self.warnings: list[Problem] = []
        self.error_count = 0
        self.warning_count = 0
        self.counts: dict[str, int] = {}

    def error(self, code: str, message: str, key: str | None = None) -> None:
        self.error_count += 1
        self.counts[code] = self.counts.get(code, 0) + 1
        if len(self.errors) < self.limit:
            self.errors.append(Problem(code=code, message=message, key=key))

    def warning(self, code: str, message: str, key: str | None = None) -> None:
        self.warning_count += 1
        self.counts[code] = self.counts.get(code, 0) + 1
        if len(self.warnings) < self.limit:
            self.warnings.append(Problem(code=code, message=message, key=key))
