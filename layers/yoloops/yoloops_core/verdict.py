"""The promotion verdict: is the challenger really better than the champion?

Like for like: the training job scores both models with the same validator settings on the same images
(this version's val split, and its test split when there is one; `metrics.json` -> `evaluation`). The
rules, each on those paired numbers:

- val:   the challenger beats the champion on PromotionMetric by more than MinImprovement;
- test:  it loses no more than MaxTestRegression on the test split (the team's regression set);
- class: no class both models know loses more than MaxClassDrop per-class mAP50-95 on val; a class with
         fewer than MinClassInstances val instances is exempt (and named).

Class lists that differ are compared on the classes both know, matched by name; new classes are listed.
When pairing is impossible (the champion's weights are missing or unreadable, or the job did not score
it), the champion's recorded number is used and the verdict says "not like-for-like". The first model
of a dataset must reach MinFirstMetric.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from yoloops_core.config import Settings
from yoloops_core.models import ChampionRef

EPS = 1e-9  # float fuzz: 0.50 - 0.48 is 0.020000000000000018, which must count as a drop of 0.02
METRICS = ("mAP50-95", "mAP50", "precision", "recall")
PER_CLASS_METRICS = ("mAP50-95", "mAP50")
CLASS_METRIC = "mAP50-95"
TOP_CLASS_CHANGES = 5

PAIRED, RECORDED, FIRST = "paired", "recorded", "first"


@dataclass
class Check:
    rule: str  # val | test | class | first | recorded
    passed: bool
    detail: str


@dataclass
class Verdict:
    better: bool
    basis: str  # paired | recorded | first
    metric: str
    challenger: float  # the challenger's PromotionMetric on val (on the shared classes when they differ)
    champion: float | None
    delta: float | None
    compared_with: str | None  # the champion's run id (Promote requires it to still be champion)
    like_for_like: bool
    reason: str | None = None  # why not better
    notes: list[str] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    table: list[dict[str, Any]] = field(default_factory=list)  # metric | challenger | champion | delta per split
    class_changes: list[dict[str, Any]] = field(default_factory=list)  # largest per-class changes on val
    shared_classes: list[str] = field(default_factory=list)
    new_classes: list[str] = field(default_factory=list)
    removed_classes: list[str] = field(default_factory=list)
    exempt_classes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _per_class(scores: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {str(k): v for k, v in (scores.get("per_class") or {}).items() if isinstance(v, dict)}


def _class_mean(per_class: dict[str, dict[str, Any]], classes: list[str], metric: str) -> float | None:
    values = [_num(per_class.get(c, {}).get(metric)) for c in classes]
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def _instances(split: dict[str, Any], challenger: dict[str, dict[str, Any]], name: str) -> int:
    counts = split.get("instances_per_class") or {}
    value = counts.get(name, challenger.get(name, {}).get("instances"))
    return int(value) if isinstance(value, (int, float)) else 0


class _Pair:
    """One split's paired numbers, restricted to the classes both models know when the lists differ."""

    def __init__(self, split: dict[str, Any], shared: list[str] | None) -> None:
        self.split = split
        self.mine = split.get("challenger") or {}
        self.theirs = split.get("champion") or {}
        self.mine_pc, self.theirs_pc = _per_class(self.mine), _per_class(self.theirs)
        present = [c for c in (shared or []) if _instances(split, self.mine_pc, c) > 0]
        self.classes = present if shared is not None else None

    def value(self, scores: dict[str, Any], per_class: dict[str, dict[str, Any]], metric: str) -> float | None:
        if self.classes is not None and metric in PER_CLASS_METRICS:
            return _class_mean(per_class, self.classes, metric)
        return _num(scores.get(metric))

    def pair(self, metric: str) -> tuple[float | None, float | None]:
        return self.value(self.mine, self.mine_pc, metric), self.value(self.theirs, self.theirs_pc, metric)


def _row(split: str, metric: str, a: float | None, b: float | None) -> dict[str, Any]:
    return {"split": split, "metric": metric, "challenger": a, "champion": b,
            "delta": None if a is None or b is None else round(a - b, 6)}


def beats(challenger: float, champion: float, min_improvement: float) -> bool:
    """Better by MORE than min_improvement (and at all when it is 0)."""
    return challenger - champion > min_improvement + EPS


def first_model(doc: dict[str, Any], metric: str, settings: Settings) -> Verdict:
    value = float(doc[metric])
    ok = value >= settings.min_first_metric - EPS
    v = Verdict(better=ok, basis=FIRST, metric=metric, challenger=value, champion=None, delta=None,
                compared_with=None, like_for_like=True)
    v.checks.append(Check("first", ok, f"{metric} {value:.4f} vs MinFirstMetric {settings.min_first_metric:g}"))
    if not ok:
        v.reason = (f"first model of the dataset: {metric} {value:.4f} is below MinFirstMetric "
                    f"{settings.min_first_metric:g}")
    v.table = [_row("val", m, _num(doc.get(m)), None) for m in METRICS if _num(doc.get(m)) is not None]
    return v


def recorded(doc: dict[str, Any], metric: str, champion_value: float | None, ref: ChampionRef,
             why: str, settings: Settings) -> Verdict:
    """Pairing impossible: the champion's recorded number (measured on ITS val split), said loudly."""
    value = float(doc[metric])
    note = f"not like-for-like: {why}; compared with the champion's recorded {metric} from its own val split"
    v = Verdict(better=False, basis=RECORDED, metric=metric, challenger=value, champion=champion_value,
                delta=None if champion_value is None else value - champion_value, compared_with=ref.run_id,
                like_for_like=False, notes=[note])
    if champion_value is None:
        v.reason = f"the champion has no recorded {metric} to compare with ({why}); promote by hand if wanted"
        v.checks.append(Check("recorded", False, v.reason))
        return v
    v.better = beats(value, champion_value, settings.min_improvement)
    detail = f"{metric} {value:.4f} vs recorded {champion_value:.4f} (MinImprovement {settings.min_improvement:g})"
    v.checks.append(Check("recorded", v.better, detail))
    if not v.better:
        v.reason = _not_better(metric, value, champion_value, settings.min_improvement) + " (not like-for-like)"
    v.table = [_row("val", metric, value, champion_value)]
    return v


def _not_better(metric: str, a: float, b: float, min_improvement: float) -> str:
    if a > b:
        return (f"{metric} {a:.4f} beats the champion's {b:.4f} by {a - b:+.4f}, not by more than "
                f"MinImprovement {min_improvement:g}")
    return f"{metric} {a:.4f} is not better than the champion's {b:.4f}"


def paired(doc: dict[str, Any], metric: str, ref: ChampionRef, settings: Settings) -> Verdict:
    ev = doc["evaluation"]
    splits = ev.get("splits") or {}
    val = splits["val"]
    mine_names = list(doc.get("names") or _per_class(val.get("challenger") or {}))
    theirs_names = list((ev.get("champion") or {}).get("names") or _per_class(val.get("champion") or {}))
    shared = [n for n in mine_names if n in theirs_names]
    differ = set(mine_names) != set(theirs_names)
    restrict = shared if differ else None
    v = Verdict(better=False, basis=PAIRED, metric=metric, challenger=0.0, champion=None, delta=None,
                compared_with=ref.run_id, like_for_like=True, shared_classes=shared,
                new_classes=[n for n in mine_names if n not in theirs_names],
                removed_classes=[n for n in theirs_names if n not in mine_names])
    if differ:
        if not shared:
            v.like_for_like = False
            v.reason = (f"no class in common with the champion (champion: {', '.join(theirs_names)}; this model: "
                        f"{', '.join(mine_names)}): nothing to compare; promote by hand if wanted")
            v.checks.append(Check("val", False, v.reason))
            return v
        v.notes.append(f"class lists differ: compared on the {len(shared)} classes both know ({', '.join(shared)})"
                       + (f"; new classes, not judged: {', '.join(v.new_classes)}" if v.new_classes else "")
                       + (f"; classes this version dropped: {', '.join(v.removed_classes)}" if v.removed_classes else ""))
        if metric not in PER_CLASS_METRICS:
            v.notes.append(f"{metric} has no per-class value: compared on all classes")
    failures: list[str] = []

    vp = _Pair(val, restrict)
    a, b = vp.pair(metric)
    if a is None or b is None:  # e.g. val holds only classes one of the models does not know
        v.like_for_like = False
        v.reason = (f"no {metric} for both models on val (no val instances of a class both know): nothing to "
                    "compare like-for-like; promote by hand if wanted")
        v.checks.append(Check("val", False, v.reason))
        return v
    v.challenger, v.champion, v.delta = a, b, a - b
    ok = beats(a, b, settings.min_improvement)
    v.checks.append(Check("val", ok, f"{metric} {a:.4f} vs {b:.4f} ({a - b:+.4f}; MinImprovement "
                                     f"{settings.min_improvement:g})"))
    if not ok:
        failures.append(_not_better(metric, a, b, settings.min_improvement) + " on the same val images")
    v.table = [_row("val", m, *vp.pair(m)) for m in METRICS]

    test = splits.get("test")
    if test and test.get("champion"):
        tp = _Pair(test, restrict)
        ta, tb = tp.pair(metric)
        v.table += [_row("test", m, *tp.pair(m)) for m in METRICS]
        if ta is not None and tb is not None:
            drop = tb - ta
            ok = drop <= settings.max_test_regression + EPS
            v.checks.append(Check("test", ok, f"{metric} {ta:.4f} vs {tb:.4f} on test ({ta - tb:+.4f}; "
                                              f"MaxTestRegression {settings.max_test_regression:g})"))
            if not ok:
                failures.append(f"it regresses on the test split: {metric} {ta:.4f} vs the champion's {tb:.4f} "
                                f"({-drop:+.4f}, more than MaxTestRegression {settings.max_test_regression:g})")

    _class_rule(v, vp, shared, settings, failures)
    v.better = not failures
    if failures:
        v.reason = "; ".join(failures)
    return v


def _class_rule(v: Verdict, vp: _Pair, shared: list[str], settings: Settings, failures: list[str]) -> None:
    changes, dropped = [], []
    for name in shared:
        a = _num(vp.mine_pc.get(name, {}).get(CLASS_METRIC))
        b = _num(vp.theirs_pc.get(name, {}).get(CLASS_METRIC))
        n = _instances(vp.split, vp.mine_pc, name)
        if a is None or b is None or n == 0:
            continue
        changes.append({"class": name, "challenger": a, "champion": b, "delta": round(a - b, 6), "instances": n})
        if n < settings.min_class_instances:
            v.exempt_classes.append(name)
        elif b - a > settings.max_class_drop + EPS:
            dropped.append(f"{name} {b:.3f} -> {a:.3f} ({a - b:+.3f})")
    v.class_changes = sorted(changes, key=lambda c: -abs(c["delta"]))[:TOP_CLASS_CHANGES]
    if v.exempt_classes:
        v.notes.append(f"too few val instances to judge (< MinClassInstances {settings.min_class_instances}), exempt "
                       f"from MaxClassDrop: {', '.join(v.exempt_classes)}")
    v.checks.append(Check("class", not dropped, f"per-class {CLASS_METRIC} drops <= MaxClassDrop "
                          f"{settings.max_class_drop:g}" + (f"; dropped: {', '.join(dropped)}" if dropped else "")))
    if dropped:
        failures.append(f"classes lose more than MaxClassDrop {settings.max_class_drop:g} {CLASS_METRIC}: "
                        + ", ".join(dropped))


def pairing_problem(doc: dict[str, Any], ref: ChampionRef) -> str | None:
    """Why the job's numbers cannot be paired (None: they can)."""
    if ref.missing_reason:
        return ref.missing_reason
    ev = doc.get("evaluation")
    if not isinstance(ev, dict):
        return "the training job did not score the champion (its image predates paired evaluation)"
    champ = ev.get("champion") or {}
    if champ.get("status") != PAIRED:
        return champ.get("reason") or f"the job could not score the champion ({champ.get('status') or 'unknown'})"
    if champ.get("run_id") and champ["run_id"] != ref.run_id:
        return f"the job scored {champ['run_id']}, not the run's champion {ref.run_id}"
    val = (ev.get("splits") or {}).get("val") or {}
    if not val.get("champion") or not val.get("challenger"):
        return "the job's val split has no paired scores"
    return None


def decide(doc: dict[str, Any], *, metric: str, ref: ChampionRef | None, settings: Settings,
           recorded_value: float | None = None) -> Verdict:
    """The verdict for a finished job's metrics.json (`doc`), against the champion the run started with."""
    if ref is None:
        return first_model(doc, metric, settings)
    problem = pairing_problem(doc, ref)
    if problem:
        return recorded(doc, metric, recorded_value, ref, problem, settings)
    return paired(doc, metric, ref, settings)
