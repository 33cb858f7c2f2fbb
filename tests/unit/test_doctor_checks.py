"""`yoloops doctor`'s AWS-only checks with fakes (the local stack has no Service Quotas, Price List or image
scans), and the ResourceLimitExceeded failure naming the quota, its value and where to raise it."""

from __future__ import annotations

import json
from types import SimpleNamespace

from yoloops_core.quotas import console_url, explain_limit, find_training_quotas

from yoloops.doctor import Doctor, is_placeholder

REGION = "eu-west-1"


class Pages:
    def __init__(self, pages):
        self.pages = pages

    def paginate(self, **kwargs):
        return iter(self.pages)


class FakeQuotas:
    def __init__(self, applied, defaults=()):
        self.applied, self.defaults = applied, defaults

    def get_paginator(self, op):
        return Pages([{"Quotas": list(self.applied if op == "list_service_quotas" else self.defaults)}])


class FakePricing:
    def __init__(self, prices):
        self.prices = prices

    def get_products(self, **kwargs):
        items = [{"product": {"sku": f"S{i}", "attributes": {"usagetype": "EU-Train:ml.g5.xlarge"}},
                  "terms": {"OnDemand": {"t": {"effectiveDate": "2026-11-01", "priceDimensions": {
                      "d": {"unit": "Hrs", "pricePerUnit": {"USD": str(p)}}}}}}} for i, p in enumerate(self.prices)]
        return {"PriceList": [json.dumps(i) for i in items]}


class FakeEcr:
    def __init__(self, images, findings=None):
        self.images, self.findings = images, findings

    def describe_images(self, repositoryName, imageIds):
        tag = imageIds[0]["imageTag"]
        if tag not in self.images:
            raise type("ImageNotFoundException", (Exception,), {})(f"image {tag} not found")
        return {"imageDetails": [{"imageDigest": self.images[tag]}]}

    def describe_image_scan_findings(self, repositoryName, imageId):
        return self.findings


def _doctor(params=None, clients=None, http=None):
    clients = clients or {}
    stack = SimpleNamespace(
        info=SimpleNamespace(region=REGION, local=False, label="yoloops-prod",
                             outputs={"TrainingImageRepositoryName": "yoloops-prod-training"}),
        parameter=lambda name: (params or {}).get(name),
        client=lambda service: clients[service],
        session=SimpleNamespace(client=lambda service, region_name=None: clients[service]))
    return Doctor(stack, http=http or (lambda *a: (0, "")), slack_post=False)


def _quota(name, code, value):
    return {"QuotaName": name, "QuotaCode": code, "Value": value}


def test_a_zero_spot_quota_is_red_with_the_console_link_to_raise_it():
    quotas = FakeQuotas([_quota("ml.g5.xlarge for spot training job usage", "L-SPOT", 0.0)],
                        defaults=[_quota("ml.g5.xlarge for training job usage", "L-OD", 2.0)])
    checks = {c.name: c for c in _doctor({"InstanceType": "ml.g5.xlarge"}, {"service-quotas": quotas}).quotas()}
    spot, on_demand = checks["quota spot ml.g5.xlarge"], checks["quota on-demand ml.g5.xlarge"]
    assert spot.status == "fail" and "= 0 (a run needs 1)" in spot.detail
    assert spot.fix.endswith(console_url(REGION, "L-SPOT")) and "/quotas/L-SPOT" in spot.fix
    assert on_demand.status == "ok"
    # On-demand runs: the on-demand quota is the one that must be there.
    checks = {c.name: c for c in _doctor({"InstanceType": "ml.g5.xlarge", "UseSpot": "false", "InstanceCount": "4"},
                                         {"service-quotas": quotas}).quotas()}
    assert checks["quota on-demand ml.g5.xlarge"].status == "fail"
    assert checks["quota spot ml.g5.xlarge"].status == "warn"


def test_the_price_list_filter_must_return_exactly_one_price():
    one = _doctor({"InstanceType": "ml.g5.xlarge"}, {"pricing": FakePricing([1.624])}).price_list()
    assert one[0].status == "ok" and "$1.624/h" in one[0].detail
    two = _doctor({"InstanceType": "ml.g5.xlarge"}, {"pricing": FakePricing([1.624, 1.7])}).price_list()
    assert two[0].status == "fail" and "2 prices" in two[0].detail and "HourlyPriceOverrideUsd" in two[0].fix
    none = _doctor({"InstanceType": "ml.g5.xlarge", "HourlyPriceOverrideUsd": "1.5"},
                   {"pricing": FakePricing([])}).price_list()
    assert none[0].status == "warn" and "override $1.5/h is used" in none[0].detail


def test_the_training_image_tag_resolves_to_a_digest_and_shows_its_scan():
    findings = {"imageScanStatus": {"status": "COMPLETE"},
                "imageScanFindings": {"findingSeverityCounts": {"CRITICAL": 2, "HIGH": 5}}}
    checks = _doctor({"TrainingImageTag": "v1"}, {"ecr": FakeEcr({"v1": "sha256:abc"}, findings)}).image()
    assert checks[0].status == "ok" and "yoloops-prod-training:v1 -> sha256:abc" in checks[0].detail
    assert checks[1].status == "warn" and "CRITICAL 2, HIGH 5" in checks[1].detail
    missing = _doctor({"TrainingImageTag": "v2"}, {"ecr": FakeEcr({"v1": "sha256:abc"})}).image()
    assert missing[0].status == "fail" and "not in ECR" in missing[0].detail and "docker push" in missing[0].fix


def test_the_wandb_key_is_checked_only_when_set():
    key = "0123456789abcdef0123456789abcdef01234567"
    calls = []

    def http(method, url, headers, body):
        calls.append((url, headers["Authorization"]))
        return 200, '{"data": {"viewer": {"username": "team"}}}'

    doctor = _doctor(http=http)
    doctor._secrets["WandbSecretArn"] = key
    assert doctor.wandb()[0].status == "ok" and calls[0][0] == "https://api.wandb.ai/graphql"
    doctor = _doctor(http=lambda *a: (401, "unauthorized"))
    doctor._secrets["WandbSecretArn"] = key
    assert doctor.wandb()[0].status == "fail"
    doctor._secrets["WandbSecretArn"] = "Ab3" * 13 + "Z"  # the deploy-time placeholder: W&B off
    assert doctor.wandb()[0].status == "skip"


def test_placeholders_are_the_generated_strings_not_real_values():
    assert is_placeholder("aB3dE5gH7jK9mN1pQ3sT5vX7zA9cE1gH")  # GenerateSecretString, 32
    assert not is_placeholder("https://hooks.slack.com/services/T0/B0/xyz")
    assert not is_placeholder("0123456789abcdef0123456789abcdef")  # a Slack signing secret (hex)
    assert not is_placeholder("xoxb-1-2-abc")


def test_find_training_quotas_falls_back_to_the_aws_defaults():
    quotas = FakeQuotas([], defaults=[_quota("ml.p5.48xlarge for training job usage", "L-1", 0.0),
                                      _quota("ml.p5.48xlarge for spot training job usage", "L-2", 0.0)])
    found = find_training_quotas(quotas, "ml.p5.48xlarge")
    assert found["on-demand"]["code"] == "L-1" and found["spot"]["value"] == 0.0


def test_a_run_that_hits_resource_limit_exceeded_names_the_quota_its_value_and_where_to_raise_it():
    from yoloops_core.config import Settings
    from yoloops_core.models import AttemptState, DatasetRef, RunContext, Trigger
    from yoloops_core.steps import StepError, TrainingFailedEvent, training_failed

    message = ("The account-level service limit 'ml.g5.xlarge for spot training job usage' is 0 Instances, with "
               "current utilization of 0 Instances and a request delta of 1 Instances. Please use AWS Service Quotas "
               "to request an increase for this quota.")
    hint = explain_limit(message, REGION)
    assert hint.startswith("quota 'ml.g5.xlarge for spot training job usage' is 0 Instances, 0 in use")
    assert console_url(REGION) in hint

    class Store:
        def __init__(self):
            self.updates = []

        def record_attempt_billing(self, *a, **k):
            pass

        def get_run(self, run_id):
            return {}

        def update_run(self, run_id, **fields):
            self.updates.append(fields)

    class Ledger:
        def reservations(self, run_id):
            return []

    settings = Settings(artifacts_bucket="b", runs_table="t", notifications_topic_arn="arn:aws:sns:x:1:t",
                        aws_region=REGION)
    run = RunContext(run_id="ds-x-1", dataset=DatasetRef(name="x", version="v1"),
                     trigger=Trigger(source="manual", ref="t"), image_uri="img", started_at="2026-12-01T00:00:00Z")
    error = StepError(Error="SageMaker.ResourceLimitExceededException",
                      Cause=f"{message} (Service: AmazonSageMaker; Status Code: 400; Error Code: ResourceLimitExceeded)")
    out = training_failed(TrainingFailedEvent(run=run, attempt=AttemptState(number=1, job_name="ds-x-1-a1"),
                                              error=error), settings=settings, store=Store(), ledger=Ledger())
    assert out["retry"] is False
    assert "quota 'ml.g5.xlarge for spot training job usage' is 0 Instances" in out["reason"]
    assert f"https://{REGION}.console.aws.amazon.com/servicequotas/home/services/sagemaker/quotas" in out["reason"]
