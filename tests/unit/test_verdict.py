"""The promotion decision table (yoloops_core.verdict), rule by rule, at each boundary.

Numbers are paired: both models scored in the same job on the same images (metrics.json -> evaluation).
"""

from __future__ import annotations

import pytest
from yoloops_core.config import Settings
from yoloops_core.models import ChampionRef
from yoloops_core.verdict import decide

REF = ChampionRef(run_id="ds-robots-aa-0001", model_key="models/robots/versions/ds-robots-aa-0001/best.pt",
                  metric="mAP50-95", metric_value=0.9)


def settings(**kw) -> Settings:
    base = {"artifacts_bucket": "yoloops-artifacts-test", "runs_table": "runs",
            "notifications_topic_arn": "arn:aws:sns:us-east-1:123456789012:yoloops", "training_image_uri": "img:1",
            "min_improvement": 0.0, "max_test_regression": 0.02, "max_class_drop": 0.1, "min_class_instances": 20}
    return Settings.model_validate({**base, **kw})


def scores(overall: float, per_class: dict[str, float], instances: int = 50) -> dict:
    return {"mAP50-95": overall, "mAP50": overall + 0.2, "precision": 0.7, "recall": 0.6,
            "per_class": {c: {"mAP50-95": v, "mAP50": v + 0.2, "instances": instances} for c, v in per_class.items()}}


def doc(val: tuple[dict, dict], test: tuple[dict, dict] | None = None, names=("box", "cone"),
        champion_names=("box", "cone"), instances: int = 50) -> dict:
    def split(pair):
        mine, theirs = pair
        return {"images": 40, "instances": instances * len(names), "images_sha256": "x",
                "instances_per_class": {n: instances for n in names}, "challenger": mine, "champion": theirs}

    splits = {"val": split(val)}
    if test:
        splits["test"] = split(test)
    return {"mAP50-95": val[0]["mAP50-95"], "names": list(names),
            "evaluation": {"champion": {"status": "paired", "run_id": REF.run_id, "names": list(champion_names)},
                           "splits": splits}}


def flat(v: float) -> dict:
    return scores(v, {"box": v, "cone": v})


# ---------------------------------------------------------------- val: better by MORE than MinImprovement

@pytest.mark.parametrize(("mine", "theirs", "min_improvement", "better"), [
    (0.51, 0.50, 0.0, True),
    (0.50, 0.50, 0.0, False),   # equal is not better
    (0.49, 0.50, 0.0, False),
    (0.52, 0.50, 0.02, False),  # exactly MinImprovement is not "more than"
    (0.5201, 0.50, 0.02, True),
])
def test_val_rule_boundary(mine, theirs, min_improvement, better):
    v = decide(doc((flat(mine), flat(theirs))), metric="mAP50-95", ref=REF, settings=settings(min_improvement=min_improvement))
    assert v.basis == "paired" and v.like_for_like and v.better is better
    assert v.challenger == pytest.approx(mine) and v.champion == pytest.approx(theirs)
    assert (v.reason is None) is better


def test_val_uses_paired_numbers_not_the_recorded_one():
    """The champion's recorded 0.9 (its own, easier val split) is ignored: on these images it scores 0.30."""
    v = decide(doc((flat(0.35), flat(0.30))), metric="mAP50-95", ref=REF, settings=settings(), recorded_value=0.9)
    assert v.better is True and v.champion == pytest.approx(0.30)
    worse = decide(doc((flat(0.003), flat(0.08))), metric="mAP50-95", ref=REF, settings=settings(),
                   recorded_value=0.0004)  # the case: a 25x worse model against a low recorded number
    assert worse.better is False and "not better than the champion's 0.0800" in worse.reason


# ---------------------------------------------------------------- test: at most MaxTestRegression lost

@pytest.mark.parametrize(("test_mine", "better"), [(0.48, True), (0.4799, False), (0.60, True)])
def test_test_rule_boundary(test_mine, better):
    v = decide(doc((flat(0.6), flat(0.5)), test=(flat(test_mine), flat(0.50))), metric="mAP50-95", ref=REF,
               settings=settings(max_test_regression=0.02))
    assert v.better is better
    assert [c.rule for c in v.checks] == ["val", "test", "class"]
    if not better:
        assert "regresses on the test split" in v.reason and "MaxTestRegression 0.02" in v.reason
    assert {r["split"] for r in v.table} == {"val", "test"}


# ---------------------------------------------------------------- class: no shared class drops > MaxClassDrop

@pytest.mark.parametrize(("cone", "better"), [(0.40, True), (0.3999, False)])
def test_class_rule_boundary(cone, better):
    mine = scores(0.7, {"box": 0.9, "cone": cone})   # overall better, but cone falls from 0.5
    theirs = scores(0.5, {"box": 0.5, "cone": 0.5})
    v = decide(doc((mine, theirs)), metric="mAP50-95", ref=REF, settings=settings(max_class_drop=0.1))
    assert v.better is better
    if not better:
        assert "cone 0.500 -> 0.400" in v.reason and "MaxClassDrop 0.1" in v.reason
    assert v.class_changes[0]["class"] == "box"  # largest change first


def test_class_with_too_few_instances_is_exempt_and_named():
    mine = scores(0.7, {"box": 0.9, "cone": 0.1})
    theirs = scores(0.5, {"box": 0.5, "cone": 0.5})
    v = decide(doc((mine, theirs), instances=19), metric="mAP50-95", ref=REF, settings=settings(min_class_instances=20))
    assert v.better is True and v.exempt_classes == ["box", "cone"]
    assert any("too few val instances" in n and "cone" in n for n in v.notes)
    at_floor = decide(doc((mine, theirs), instances=20), metric="mAP50-95", ref=REF, settings=settings())
    assert at_floor.better is False and at_floor.exempt_classes == []


# ---------------------------------------------------------------- like-for-like impossible or partial

def test_class_lists_differ_compare_on_shared_classes_and_list_the_new_ones():
    mine = scores(0.4, {"box": 0.6, "cone": 0.55, "ball": 0.05})  # overall dragged down by the new class
    theirs = scores(0.5, {"box": 0.5, "cone": 0.5})
    v = decide(doc((mine, theirs), names=("box", "cone", "ball")), metric="mAP50-95", ref=REF, settings=settings())
    assert v.better is True and v.shared_classes == ["box", "cone"] and v.new_classes == ["ball"]
    assert v.challenger == pytest.approx(0.575) and v.champion == pytest.approx(0.5)
    assert any("new classes, not judged: ball" in n for n in v.notes)
    renamed = decide(doc((scores(0.9, {"crate": 0.9}), scores(0.1, {"box": 0.1})), names=("crate",),
                         champion_names=("box",)), metric="mAP50-95", ref=REF, settings=settings())
    assert renamed.better is False and "no class in common" in renamed.reason
    # Shared classes exist, but val holds only the new class: nothing to compare, said, never a crash.
    only_new = doc((scores(0.9, {"ball": 0.9}), scores(0.0, {})), names=("box", "ball"), champion_names=("box",))
    only_new["evaluation"]["splits"]["val"]["instances_per_class"] = {"ball": 50}
    v = decide(only_new, metric="mAP50-95", ref=REF, settings=settings())
    assert v.better is False and "nothing to compare like-for-like" in v.reason


@pytest.mark.parametrize(("evaluation", "why"), [
    (None, "did not score the champion"),
    ({"champion": {"status": "unreadable", "reason": "champion best.pt: not a YOLO checkpoint"}},
     "not a YOLO checkpoint"),
])
def test_unpaired_falls_back_to_the_recorded_number_and_says_so(evaluation, why):
    d = {"mAP50-95": 0.95, **({"evaluation": evaluation} if evaluation else {})}
    v = decide(d, metric="mAP50-95", ref=REF, settings=settings(), recorded_value=0.9)
    assert v.basis == "recorded" and not v.like_for_like and v.better is True
    assert why in v.notes[0] and "not like-for-like" in v.notes[0]


def test_missing_champion_weights_fall_back_too():
    ref = REF.model_copy(update={"model_key": None, "missing_reason": "the champion's weights s3://b/k are missing"})
    v = decide({"mAP50-95": 0.5}, metric="mAP50-95", ref=ref, settings=settings(), recorded_value=0.9)
    assert v.basis == "recorded" and v.better is False and "weights s3://b/k are missing" in v.notes[0]


@pytest.mark.parametrize(("value", "floor", "better"), [(0.3, 0.3, True), (0.2999, 0.3, False)])
def test_first_model_must_reach_min_first_metric(value, floor, better):
    v = decide({"mAP50-95": value}, metric="mAP50-95", ref=None, settings=settings(min_first_metric=floor))
    assert v.basis == "first" and v.better is better and v.compared_with is None
