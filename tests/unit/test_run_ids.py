"""Run ids: injective in the trigger (despite slugs and truncation), content-addressed, SageMaker-safe."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st
from yoloops_core.models import (
    DatasetRef,
    job_name,
    run_id_for_dataset,
    run_id_for_release,
    run_id_from_job_name,
)
from yoloops_core.run_ids import MAX_RUN_ID_LENGTH, listing_hash

SAGEMAKER_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
CONTENT = "0" * 64


def ds(name, version, fmt="dir", location=None):
    return run_id_for_dataset(DatasetRef(name=name, version=version, format=fmt, location=location), CONTENT)


@pytest.mark.parametrize(("a", "b"), [
    (ds("a-b", "c"), ds("a", "b-c")),            # dataset a-b/c vs a/b-c
    (ds("x", "v1.2"), ds("x", "v1_2")),           # versions v1.2 vs v1_2
    (ds("x", "v1"), ds("x", "v1", fmt="zip")),     # v1/ vs v1.zip
    (run_id_for_release("acme-det/x", "v1", 1), run_id_for_release("acme/det-x", "v1", 1)),
    (ds("d" * 63, "v" * 60 + "1"), ds("d" * 63, "v" * 60 + "2")),  # same truncated prefix
    (ds("fizz", "0badc0de", location="datasets/fizz/"), ds("fizz", "0badc0de")),  # unversioned vs folder
])
def test_distinct_triggers_never_share_a_run_id(a, b):
    assert a != b


def test_new_content_or_a_new_release_attempt_is_a_new_run_id():
    ref = DatasetRef(name="fizz", version="v1")
    assert run_id_for_dataset(ref, "a" * 64) != run_id_for_dataset(ref, "b" * 64)
    assert run_id_for_dataset(ref, "a" * 64) == run_id_for_dataset(ref, "a" * 64)
    first = run_id_for_release("acme/det", "v1", 42)
    assert first != run_id_for_release("acme/det", "v1", 43)  # a new release with the same tag
    assert run_id_for_release("acme/det", "v1", 42, retry=2) == first + "-r2"  # re-published after ImageNotFound


@given(name=st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}", fullmatch=True),
       version=st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}", fullmatch=True),
       repo=st.from_regex(r"[A-Za-z0-9_.-]{1,39}/[A-Za-z0-9_.-]{1,100}", fullmatch=True),
       tag=st.text(min_size=1, max_size=255), retry=st.integers(1, 99))
def test_every_run_id_is_a_valid_sagemaker_job_name_with_any_attempt(name, version, repo, tag, retry):
    for run_id in (ds(name, version), ds(name, version, fmt="zip"), run_id_for_release(repo, tag, 7, retry)):
        assert len(run_id) <= MAX_RUN_ID_LENGTH
        named = job_name(run_id, 10, STACK_CODE)
        assert SAGEMAKER_NAME.fullmatch(named), run_id
        assert len(named) <= 63
        assert run_id_from_job_name(named, STACK_CODE) == (run_id, 10)


STACK_CODE = "51af3dc0"  # 8 hex characters of the stack id (template: STACK_CODE)


def test_job_names_are_unique_per_stack_and_only_the_own_stack_claims_them():
    run_id = ds("pallets", "v3")
    dev, prod = job_name(run_id, 1, "51af3dc0"), job_name(run_id, 1, "9c0e44b1")
    assert dev != prod and dev.startswith(run_id) and dev.endswith("-51af3dc0-a1")  # readable: run id first
    assert run_id_from_job_name(dev, "51af3dc0") == (run_id, 1)
    assert run_id_from_job_name(prod, "51af3dc0") is None  # the other stack's job is not ours
    assert run_id_from_job_name(job_name(run_id, 1), "51af3dc0") is None  # nor a job without a code
    for foreign in ("xgboost-churn-2026-11-28-09-00-00-123", "pipelines-abc-a1", "ds-x-v1-a1"):
        assert run_id_from_job_name(foreign, "51af3dc0") is None


def test_listing_hash_is_order_free_ignores_the_manifest_and_sees_any_change():
    entries = [("a.jpg", 3, '"e1"'), ("labels/a.txt", 5, "e2")]
    h = listing_hash(entries)
    assert h == listing_hash([*reversed(entries), ("manifest.json", 9, "x")])
    assert h != listing_hash([("a.jpg", 3, "e1"), ("labels/a.txt", 5, "e3")])
    assert h != listing_hash([("a.jpg", 4, "e1"), ("labels/a.txt", 5, "e2")])
    assert h != listing_hash([("b.jpg", 3, "e1"), ("labels/a.txt", 5, "e2")])
