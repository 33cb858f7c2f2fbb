"""`yoloops doctor`: red/green checks of a deployed stack (AWS or local), each red line with its fix.

    identity and region; function URLs answering          SageMaker spot and on-demand training quotas
    secrets still holding their deploy-time placeholders  a Slack test post; the W&B key, when set
    training image tag -> digest, and its scan findings   Price List: exactly one price for the type/region
    budget left this month                                EventBridge rules enabled; dead-letter queues empty

Each check returns a `Check` (ok | warn | fail | skip). A check that raises is a `fail` naming the error,
so one broken permission never hides the other lines. The CLI exits non-zero when any line is `fail`.
"""

from __future__ import annotations

import base64
import json
import re
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from yoloops.client import Stack

Status = Literal["ok", "warn", "fail", "skip"]
# GenerateSecretString (PasswordLength 32/40, no punctuation) as the template creates every secret: a random
# mixed-case alphanumeric string. Real values never look like that (URLs, xoxb-/ghp_ tokens, hex keys).
_PLACEHOLDER = re.compile(r"^(?=[A-Za-z0-9]*[A-Z])[A-Za-z0-9]{32}$|^(?=[A-Za-z0-9]*[A-Z])[A-Za-z0-9]{40}$")
WANDB_VIEWER = "https://api.wandb.ai/graphql"


@dataclass
class Check:
    name: str
    status: Status
    detail: str
    fix: str = ""


def is_placeholder(value: str) -> bool:
    return bool(_PLACEHOLDER.match(value.strip()))


# HTTP for the function-URL and W&B checks: (method, url, headers, body) -> (status, text); status 0 = no answer.
Http = Callable[[str, str, dict[str, str], bytes | None], tuple[int, str]]


def urllib_http(method: str, url: str, headers: dict[str, str], body: bytes | None) -> tuple[int, str]:
    request = urllib.request.Request(url, data=body, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, resp.read(4096).decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(4096).decode("utf-8", "replace")
    except (urllib.error.URLError, OSError) as exc:
        return 0, f"{type(exc).__name__}: {exc}"


class Doctor:
    def __init__(self, stack: Stack, *, http: Http = urllib_http, slack_post: bool = True,
                 slack_poster: Any = None) -> None:
        self.stack, self.http, self.slack_post, self.slack_poster = stack, http, slack_post, slack_poster
        self.region = stack.info.region
        self.local = stack.info.local
        self._secrets: dict[str, str | None] = {}

    # ------------------------------------------------------------ helpers
    def param(self, name: str, default: str = "") -> str:
        value = self.stack.parameter(name)
        return default if value in (None, "") else str(value)

    def secret(self, output: str) -> str | None:
        if output not in self._secrets:
            arn = self.stack.info.outputs.get(output)
            self._secrets[output] = self.stack.client("secretsmanager").get_secret_value(
                SecretId=arn)["SecretString"] if arn else None
        return self._secrets[output]

    def run(self) -> list[Check]:
        checks: list[Check] = []
        for fn in (self.identity, self.function_urls, self.quotas, self.secrets, self.slack, self.wandb,
                   self.image, self.price_list, self.budget, self.rules, self.dead_letters):
            name = fn.__name__.replace("_", " ")
            try:
                checks += fn()
            except Exception as exc:  # one broken call is a red line, never the end of the report
                checks.append(Check(name, "fail", f"{type(exc).__name__}: {str(exc)[:300]}",
                                    "check the credentials' permissions for this call (the error names it)"))
        return checks

    # ------------------------------------------------------------ checks
    def identity(self) -> list[Check]:
        who = self.stack.client("sts").get_caller_identity()
        where = "the local stack" if self.local else f"stack {self.stack.info.label}"
        return [Check("identity", "ok", f"account {who['Account']} as {who['Arn']}, region {self.region}, {where}")]

    def function_urls(self) -> list[Check]:
        out = []
        for key in ("GithubWebhookUrl", "SlackInteractionsUrl"):
            url = self.stack.info.outputs.get(key)
            if not url:
                out.append(Check(f"function URL {key}", "fail", "the stack has no such output",
                                 f"Lambda function URLs must exist in {self.region}: redeploy the stack (sam deploy) "
                                 "in a region that offers function URLs"))
                continue
            status, text = self.http("GET", url, {}, None)  # unsigned: the function answers 4xx, and that is fine
            if status == 0:
                out.append(Check(f"function URL {key}", "fail", f"{url} does not answer ({text[:160]})",
                                 f"check that Lambda function URLs are available in {self.region} and that the "
                                 "function exists (aws lambda get-function-url-config)"))
            else:
                out.append(Check(f"function URL {key}", "ok", f"{url} answers (HTTP {status})"))
        return out

    def quotas(self) -> list[Check]:
        from yoloops_core.quotas import console_url, find_training_quotas

        itype, count = self.param("InstanceType", "ml.g5.xlarge"), int(self.param("InstanceCount", "1"))
        if self.local:
            return [Check("SageMaker quotas", "skip", f"the local stack emulates no Service Quotas ({itype})")]
        found = find_training_quotas(self.stack.client("service-quotas"), itype)
        spot = self.param("UseSpot", "true") == "true"
        out = []
        for kind in ("spot", "on-demand"):
            quota = found.get(kind)
            needed = kind == ("spot" if spot else "on-demand")
            label = f"quota {kind} {itype}"
            if quota is None:
                out.append(Check(label, "warn", f"Service Quotas lists no '{itype} for {kind} training' quota here",
                                 f"is {itype} offered in {self.region}? See {console_url(self.region)}"))
                continue
            value = quota["value"]
            text = f"'{quota['name']}' = {value:g} (a run needs {count})"
            if value >= count:
                out.append(Check(label, "ok", text))
            else:
                why = "every run" if needed else "the on-demand fallback after spot failures" if spot else "spot"
                out.append(Check(label, "fail" if needed else "warn", f"{text}: {why} fails with ResourceLimitExceeded",
                                 f"request an increase to at least {count}: {console_url(self.region, quota['code'])}"))
        return out

    def secrets(self) -> list[Check]:
        from yoloops_core.slack import webhook_url_from_secret

        out = []
        outputs = self.stack.info.outputs
        put = "aws secretsmanager put-secret-value --secret-id {arn} --secret-string '{what}'"
        webhook = self.secret("SlackWebhookSecretArn")
        try:
            webhook_url_from_secret(webhook or "")
            out.append(Check("secret Slack webhook", "ok", "holds a URL"))
        except ValueError:
            out.append(Check("secret Slack webhook", "fail", "still the deploy-time placeholder: no notification "
                             "reaches Slack", put.format(arn=outputs.get("SlackWebhookSecretArn"),
                                                         what="https://hooks.slack.com/services/...")))
        optional = (("SlackBotTokenSecretArn", "Slack bot token", "xoxb-...", "optional: without it messages go "
                     "through the webhook, not one thread per run"),
                    ("SlackSigningSecretArn", "Slack signing secret", "<the Slack app's signing secret>",
                     "approval buttons are refused until it holds the app's secret"),
                    ("GithubTokenSecretArn", "GitHub token", "github_pat_...", "optional: releases get no "
                     "verdict or model bundle written back"))
        for key, name, what, why in optional:
            value = self.secret(key)
            if value is None:
                continue
            if is_placeholder(value) or not value.strip():
                out.append(Check(f"secret {name}", "warn", f"still the placeholder ({why})",
                                 put.format(arn=outputs.get(key), what=what)))
            else:
                out.append(Check(f"secret {name}", "ok", "set"))
        if outputs.get("GithubWebhookSecretArn"):
            out.append(Check("secret GitHub webhook", "ok", "generated at deploy: paste it into the repository's "
                             "webhook settings (aws secretsmanager get-secret-value)"))
        return out

    def slack(self) -> list[Check]:
        from yoloops_core.slack import SlackDeliveryError, post, webhook_url_from_secret

        if not self.slack_post:
            return [Check("Slack test post", "skip", "--no-slack")]
        try:
            url = webhook_url_from_secret(self.secret("SlackWebhookSecretArn") or "")
        except ValueError:
            return [Check("Slack test post", "skip", "no webhook URL yet (see the secret line above)")]
        text = (f"yoloops doctor: test post from {self.stack.info.label} ({self.region}) at "
                f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC. Notifications reach this channel.")
        try:
            post(url, {"text": text}, poster=self.slack_poster, max_attempts=2)
        except SlackDeliveryError as exc:
            return [Check("Slack test post", "fail", str(exc)[:300],
                          "the webhook was revoked or mistyped: create a new incoming webhook and put it in the secret")]
        return [Check("Slack test post", "ok", "posted (look for it in the channel)")]

    def wandb(self) -> list[Check]:
        value = (self.secret("WandbSecretArn") or "").strip()
        if not value or is_placeholder(value):
            return [Check("W&B key", "skip", "not set (runs log to W&B once the WandbSecretArn secret holds a key)")]
        auth = base64.b64encode(f"api:{value}".encode()).decode()
        status, text = self.http("POST", WANDB_VIEWER, {"Authorization": f"Basic {auth}",
                                                        "Content-Type": "application/json"},
                                 json.dumps({"query": "query { viewer { username } }"}).encode())
        if status == 200 and '"username"' in text and '"viewer":null' not in text.replace(" ", ""):
            return [Check("W&B key", "ok", "accepted by api.wandb.ai")]
        return [Check("W&B key", "fail", f"api.wandb.ai answered HTTP {status}: {text[:160]}",
                      "put a valid key from https://wandb.ai/authorize into the WandbSecretArn secret")]

    def image(self) -> list[Check]:
        uri = self.param("TrainingImageUri")
        repo, tag = self.stack.info.outputs.get("TrainingImageRepositoryName"), self.param("TrainingImageTag", "latest")
        if uri:
            path = uri.split("/", 1)[-1]
            repo, _, tag = path.partition("@")[0].partition(":")
            if "@" in uri:
                return [Check("training image", "ok", f"pinned by digest: {uri}")]
        if not repo:
            return [Check("training image", "fail", "no TrainingImageRepositoryName output", "redeploy the stack")]
        ecr = self.stack.client("ecr")
        try:
            image = ecr.describe_images(repositoryName=repo, imageIds=[{"imageTag": tag}])["imageDetails"][0]
        except Exception as exc:
            if "ImageNotFound" not in type(exc).__name__ + str(exc):
                raise
            return [Check("training image", "fail", f"{repo}:{tag} is not in ECR: every run would fail",
                          f"build and push it: docker build -t {repo}:{tag} training_container && docker push ... "
                          "(README, first deploy step 3)")]
        digest = image["imageDigest"]
        out = [Check("training image", "ok", f"{repo}:{tag} -> {digest}")]
        try:
            scan = ecr.describe_image_scan_findings(repositoryName=repo, imageId={"imageDigest": digest})
        except Exception as exc:
            return [*out, Check("image scan", "warn", f"no scan findings ({type(exc).__name__})",
                                f"aws ecr start-image-scan --repository-name {repo} --image-id imageDigest={digest}")]
        counts = (scan.get("imageScanFindings") or {}).get("findingSeverityCounts") or {}
        status = str((scan.get("imageScanStatus") or {}).get("status") or "?")
        shown = ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "no findings"
        if status != "COMPLETE":
            out.append(Check("image scan", "warn", f"scan {status}", "wait for the scan, then run doctor again"))
        elif counts.get("CRITICAL"):
            out.append(Check("image scan", "warn", shown, "rebuild on a patched base image (training_container/"
                             "Dockerfile) and push a new tag"))
        else:
            out.append(Check("image scan", "ok", shown))
        return out

    def price_list(self) -> list[Check]:
        from yoloops_core.prices import list_training_prices, pricing_endpoint_region

        itype = self.param("InstanceType", "ml.g5.xlarge")
        override = self.param("HourlyPriceOverrideUsd")
        if self.local:
            return [Check("Price List", "skip", f"the local stack has no Price List API (override: {override or 'none'})")]
        pricing = self.stack.session.client("pricing", region_name=pricing_endpoint_region(self.region))
        found = list_training_prices(pricing, self.region, itype)
        prices = sorted({p.hourly_usd for p in found})
        fix = f"set HourlyPriceOverrideUsd to the on-demand hourly price of {itype} in {self.region}"
        if len(prices) == 1:
            return [Check("Price List", "ok", f"one on-demand training price for {itype} in {self.region}: "
                          f"${prices[0]}/h")]
        if not prices:
            return [Check("Price List", "warn" if override else "fail", f"no on-demand training price for {itype} in "
                          f"{self.region}" + (f"; the override ${override}/h is used" if override else ""), fix)]
        return [Check("Price List", "warn" if override else "fail", f"{len(prices)} prices for {itype} in "
                      f"{self.region}: {prices}; the gate takes the highest", fix)]

    def budget(self) -> list[Check]:
        b = self.stack.budget()
        price = b.get("price") or {}
        out = []
        if price.get("error"):
            out.append(Check("price", "fail", price["error"][:300], "set HourlyPriceOverrideUsd"))
        else:
            out.append(Check("price", "warn" if price.get("stale") else "ok",
                             f"${price.get('hourly_usd')}/h ({price.get('source')}, {price.get('age_days')} days old)",
                             "invoke the RefreshPricesFunction output's function" if price.get("stale") else ""))
        text = (f"${b['remaining_usd']:.2f} left of ${b['budget_usd']:.2f} in {b['month']} (spent "
                f"${b['spent_usd']:.2f}, in flight ${b['in_flight_usd']:.2f})")
        if b["remaining_usd"] > 0:
            out.append(Check("budget", "ok", text))
        else:
            out.append(Check("budget", "fail", text + ": every run is blocked",
                             "raise MonthlyBudgetUsd (sam deploy --parameter-overrides MonthlyBudgetUsd=...) or wait "
                             "for next month"))
        return out

    def _rule_names(self) -> list[str]:
        if not self.local:
            names, cfn = [], self.stack.client("cloudformation")
            for page in cfn.get_paginator("list_stack_resources").paginate(StackName=self.stack.info.label):
                names += [r["PhysicalResourceId"] for r in page["StackResourceSummaries"]
                          if r["ResourceType"] == "AWS::Events::Rule" and r.get("PhysicalResourceId")]
            return names
        # The local stack names resources <stack name>-<logical id>, like its functions.
        function = self.stack.info.outputs.get("SlackNotifierFunctionName", "")
        prefix = function.rsplit("-SlackNotifierFunction", 1)[0] + "-"
        return [r["Name"] for page in self.stack.client("events").get_paginator("list_rules").paginate(NamePrefix=prefix)
                for r in page["Rules"]]

    def rules(self) -> list[Check]:
        events = self.stack.client("events")
        names = self._rule_names()
        if not names:
            return [Check("EventBridge rules", "warn", "none found for this stack", "redeploy the stack")]
        disabled = [n for n in names if events.describe_rule(Name=n).get("State") != "ENABLED"]
        if disabled:
            return [Check("EventBridge rules", "fail", f"{len(disabled)} of {len(names)} disabled: {', '.join(disabled)}",
                          "; ".join(f"aws events enable-rule --name {n}" for n in disabled))]
        return [Check("EventBridge rules", "ok", f"{len(names)} enabled")]

    def dead_letters(self) -> list[Check]:
        out = []
        sqs = self.stack.client("sqs")
        for name, url in sorted(self.stack.dlq_urls().items()):
            attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])
            n = int(attrs["Attributes"].get("ApproximateNumberOfMessages", 0))
            if n:
                out.append(Check(f"DLQ {name}", "fail", f"{n} message(s) that never got processed",
                                 f"yoloops dlq list --queue {name}; after fixing the cause: yoloops dlq redrive --queue "
                                 f"{name}"))
            else:
                out.append(Check(f"DLQ {name}", "ok", "empty"))
        return out


def run_doctor(stack: Stack, **kwargs: Any) -> dict[str, Any]:
    checks = Doctor(stack, **kwargs).run()
    return {"stack": stack.info.label, "region": stack.info.region, "ok": all(c.status != "fail" for c in checks),
            "checks": [asdict(c) for c in checks]}
