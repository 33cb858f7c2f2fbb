"""No run can reach Step Functions' 256 KiB state limit: the report and the job description are cut."""

from __future__ import annotations

import json
from pathlib import Path

from yoloops_core.dataset.report import DatasetReport, Problem, SplitStats
from yoloops_core.state_size import REPORT_BYTES, compact_report
from yoloops_core.steps import ValidateDatasetEvent, validate_dataset

ROOT = Path(__file__).resolve().parents[2]
STATE_LIMIT = 256 * 1024


def _huge_report() -> DatasetReport:
    """What a 50,000-image dataset with a broken label in every file and 2,000 classes reports,
    if every problem were listed (the validator lists fewer; the state must hold either way)."""
    problems = [Problem(code="class_out_of_range", key=f"datasets/big/v1/labels/train/img_{i:05d}.txt",
                        message=f"line 1: class 2000 out of range 0..1999 in img_{i:05d}.txt") for i in range(50_000)]
    names = [f"class-{i}" for i in range(2000)]
    return DatasetReport(source="s3://b/datasets/big/v1/", valid=False, layout="ultralytics", nc=2000, names=names,
                         splits={"train": SplitStats(images=42_500, labels=42_500), "val": SplitStats(images=7_500)},
                         class_instances={n: 25 for n in names}, errors=problems, error_count=50_000,
                         problem_counts={"class_out_of_range": 50_000}, files=100_001, bytes=5 * 10**9)


def test_a_50000_image_report_is_cut_below_its_share_of_the_state(event, settings, store, s3, validator_factory):
    report = _huge_report()
    assert len(json.dumps(report.model_dump(mode="json"))) > STATE_LIMIT  # the problem is real
    validator = validator_factory(valid=False)
    validator.report = report
    out = validate_dataset(ValidateDatasetEvent.model_validate(event("stepfn_validate_dataset_ok.json")),
                           settings=settings, store=store, s3=s3, validator=validator)
    carried = out["validation"]["report"]
    assert len(json.dumps(carried).encode()) <= REPORT_BYTES
    assert carried["error_count"] == 50_000 and carried["truncated"]["errors"] == 50_000  # counts stay whole
    assert len(carried["errors"]) == 20 and carried["errors"][0]["key"].endswith("img_00000.txt")
    assert carried["summary"].startswith("Dataset s3://b/datasets/big/v1/: REJECTED")
    assert len(json.dumps(out).encode()) < STATE_LIMIT // 4


def test_small_reports_pass_unchanged():
    small = {"valid": True, "errors": [], "summary": "ok", "names": ["a"]}
    assert compact_report(small) == small


def test_train_state_carries_no_job_description():
    asl = json.loads((ROOT / "statemachine" / "training.asl.json").read_text())
    selector = asl["States"]["Train"]["ResultSelector"]
    assert selector == {"job_name.$": "$.TrainingJobName", "status.$": "$.TrainingJobStatus"}
