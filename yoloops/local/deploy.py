"""Deploy the real template.yaml into the moto server: SAM transform offline, then a resource walker.

moto's CloudFormation drops what this stack depends on (DefinitionSubstitutions, S3
NotificationConfiguration, layers, secrets, function URLs), so the translated template is walked here:
intrinsics are resolved, resources are created through the AWS APIs on the local endpoint in
dependency order, functions are registered with the in-process Lambda runtime with their resolved
environment, and the Outputs come back exactly as `aws cloudformation describe-stacks` would give them.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import io
import json
import logging
import re
import uuid
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from yoloops.local.lambdas import FunctionSpec, LambdaRuntime

log = logging.getLogger("yoloops.local.deploy")

ACCOUNT = "123456789012"
CODE_BUCKET = "yoloops-local-code"  # stands in for `sam package`'s bucket; never created
NO_VALUE = object()


class DeployError(RuntimeError):
    """The template cannot be deployed locally; the message names the resource and the problem."""


def load_template(path: Path) -> dict[str, Any]:
    """template.yaml with short-form intrinsics (!Ref, !Sub, ...) as their long form, the way `sam` reads it."""
    from samtranslator.yaml_helper import yaml_parse

    return yaml_parse(path.read_text())


# ------------------------------------------------------------------ SAM transform (offline)

class _NoManagedPolicies:
    """SAM asks IAM for the managed policy map; offline we answer from the ARN convention."""

    def load(self) -> dict[str, str]:
        return {}


def _localise_uris(template: dict[str, Any], root: Path) -> None:
    """Local CodeUri/ContentUri/DefinitionUri -> fake S3 locations (what `sam package` would do)."""

    def fake(path: str) -> dict[str, str]:
        return {"Bucket": CODE_BUCKET, "Key": str(path).rstrip("/") or "."}

    globals_fn = template.get("Globals", {}).get("Function", {})
    if isinstance(globals_fn.get("CodeUri"), str) and not globals_fn["CodeUri"].startswith("s3://"):
        globals_fn["CodeUri"] = fake(globals_fn["CodeUri"])
    for res in template.get("Resources", {}).values():
        props = res.get("Properties") or {}
        for key in ("CodeUri", "ContentUri", "DefinitionUri"):
            value = props.get(key)
            if isinstance(value, str) and not value.startswith("s3://"):
                props[key] = fake(value)


def sam_translate(template: dict[str, Any], parameters: dict[str, Any], root: Path, region: str) -> dict[str, Any]:
    from samtranslator.translator.transform import transform

    template = copy.deepcopy(template)
    _localise_uris(template, root)
    values = {"AWS::Region": region, "AWS::AccountId": ACCOUNT, "AWS::Partition": "aws",
              "AWS::StackName": "yoloops-local", **parameters}
    try:
        return transform(template, values, _NoManagedPolicies())
    except Exception as exc:
        raise DeployError(f"SAM transform failed: {exc}") from exc


# ------------------------------------------------------------------ intrinsics

@dataclass
class Deployed:
    logical_id: str
    type: str
    ref: str
    attrs: dict[str, str] = field(default_factory=dict)
    skipped: str | None = None


_SUB_RE = re.compile(r"\$\{([^}]+)\}")


class Resolver:
    def __init__(self, parameters: dict[str, Any], pseudo: dict[str, str], conditions: dict[str, Any],
                 mappings: dict[str, Any]):
        self.parameters = parameters
        self.pseudo = pseudo
        self.raw_conditions = conditions
        self.conditions: dict[str, bool] = {}
        self.mappings = mappings
        self.deployed: dict[str, Deployed] = {}

    def condition(self, name: str) -> bool:
        if name not in self.conditions:
            self.conditions[name] = bool(self.resolve(self.raw_conditions[name]))
        return self.conditions[name]

    def ref(self, name: str) -> Any:
        if name in self.pseudo:
            return self.pseudo[name]
        if name == "AWS::NoValue":
            return NO_VALUE
        if name in self.parameters:
            return self.parameters[name]
        if name in self.deployed:
            return self.deployed[name].ref
        raise DeployError(f"!Ref {name}: no parameter or resource of that name (or not deployed yet)")

    def getatt(self, logical: str, attr: str) -> Any:
        res = self.deployed.get(logical)
        if res is None:
            raise DeployError(f"!GetAtt {logical}.{attr}: resource not deployed")
        if attr in res.attrs:
            return res.attrs[attr]
        if attr == "Arn" and res.ref.startswith("arn:"):
            return res.ref
        raise DeployError(f"!GetAtt {logical}.{attr}: attribute not emulated for {res.type}")

    def sub(self, text: str, variables: dict[str, Any]) -> str:
        def repl(m: re.Match[str]) -> str:
            expr = m.group(1)
            if expr.startswith("!"):
                return "${" + expr[1:] + "}"
            if expr in variables:
                return str(variables[expr])
            if "." in expr and expr.split(".", 1)[0] in self.deployed:
                return str(self.getatt(*expr.split(".", 1)))
            return str(self.ref(expr))

        return _SUB_RE.sub(repl, text)

    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            return [v for v in (self.resolve(x) for x in value) if v is not NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            (key, arg), = value.items()
            if key == "Ref":
                return self.ref(arg)
            if key == "Fn::GetAtt":
                logical, attr = arg if isinstance(arg, list) else arg.split(".", 1)
                return self.getatt(logical, self.resolve(attr))
            if key == "Fn::Sub":
                if isinstance(arg, str):
                    return self.sub(arg, {})
                text, variables = arg
                return self.sub(text, {k: self.resolve(v) for k, v in variables.items()})
            if key == "Fn::Join":
                sep, items = arg
                return sep.join(str(x) for x in self.resolve(items))
            if key == "Fn::If":
                cond, yes, no = arg
                return self.resolve(yes if self.condition(cond) else no)
            if key == "Fn::Equals":
                a, b = (self.resolve(x) for x in arg)
                return str(a) == str(b)
            if key == "Fn::Not":
                return not self.resolve(arg[0])
            if key == "Fn::And":
                return all(self.resolve(x) for x in arg)
            if key == "Fn::Or":
                return any(self.resolve(x) for x in arg)
            if key == "Condition":
                return self.condition(arg)
            if key == "Fn::Select":
                idx, items = arg
                return self.resolve(items)[int(self.resolve(idx))]
            if key == "Fn::Split":
                sep, text = arg
                return str(self.resolve(text)).split(sep)
            if key == "Fn::FindInMap":
                m, k1, k2 = (self.resolve(x) for x in arg)
                return self.mappings[m][k1][k2]
            if key == "Fn::Base64":
                return base64.b64encode(str(self.resolve(arg)).encode()).decode()
            if key == "Fn::GetAZs":
                region = self.pseudo["AWS::Region"]
                return [f"{region}a", f"{region}b", f"{region}c"]
            if key == "Fn::ToJsonString":
                return json.dumps(self.resolve(arg))
        out = {}
        for k, v in value.items():
            r = self.resolve(v)
            if r is not NO_VALUE:
                out[k] = r
        return out


def _references(value: Any) -> set[str]:
    refs: set[str] = set()
    if isinstance(value, list):
        for x in value:
            refs |= _references(x)
    elif isinstance(value, dict):
        for k, v in value.items():
            if k == "Ref" and isinstance(v, str):
                refs.add(v)
            elif k == "Fn::GetAtt":
                refs.add(v[0] if isinstance(v, list) else str(v).split(".", 1)[0])
            elif k == "Fn::Sub":
                text = v if isinstance(v, str) else v[0]
                refs |= {e.split(".", 1)[0] for e in _SUB_RE.findall(text) if not e.startswith("!")}
                if not isinstance(v, str):
                    refs |= _references(v[1])
            else:
                refs |= _references(v)
    return refs


# ------------------------------------------------------------------ the walker

@dataclass
class Deployment:
    outputs: dict[str, str]
    resources: dict[str, Deployed]
    functions: dict[str, FunctionSpec]
    function_urls: dict[str, str]  # logical id of the function -> physical function name
    parameters: dict[str, Any]
    sqs_mappings: list[Any] = field(default_factory=list)  # event_sources.SqsMapping


def _check_parameter(name: str, spec: dict[str, Any], value: Any) -> None:
    """Refuse what CloudFormation would refuse, so a local deploy never accepts a bad parameter."""
    if isinstance(value, list):
        return
    allowed = spec.get("AllowedValues")
    if allowed is not None and value not in [str(a) for a in allowed]:
        raise DeployError(f"parameter {name}={value!r} is not one of its AllowedValues {allowed}")
    pattern = spec.get("AllowedPattern")
    if pattern and spec.get("Type", "String") == "String":
        try:
            matched = re.fullmatch(pattern, value)
        except re.error as exc:
            raise DeployError(f"parameter {name}: AllowedPattern {pattern!r} is not a valid regex ({exc})") from None
        if not matched:
            raise DeployError(f"parameter {name}={value!r} does not match its AllowedPattern {pattern}")
    if spec.get("Type") == "Number":
        try:
            number = float(value)
        except ValueError:
            raise DeployError(f"parameter {name}={value!r} is not a number") from None
        if "MinValue" in spec and number < float(spec["MinValue"]):
            raise DeployError(f"parameter {name}={value} is below its MinValue {spec['MinValue']}")
        if "MaxValue" in spec and number > float(spec["MaxValue"]):
            raise DeployError(f"parameter {name}={value} is above its MaxValue {spec['MaxValue']}")


def _tiny_zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("app.py", "# executed in-process by the yoloops local stack\n")
    return buf.getvalue()


class Deployer:
    def __init__(self, session: Any, endpoint_url: str, region: str, root: Path, runtime: LambdaRuntime,
                 function_url_base: Callable[[str], str], stack_name: str = "yoloops-local"):
        self.clients: dict[str, Any] = {}
        self.session = session
        self.endpoint_url = endpoint_url
        self.region = region
        self.root = root
        self.runtime = runtime
        self.function_url_base = function_url_base
        self.stack_name = stack_name
        self.function_urls: dict[str, str] = {}
        self.functions: dict[str, FunctionSpec] = {}
        self._bucket_notifications: list[tuple[str, dict[str, Any]]] = []
        self.sqs_mappings: list[Any] = []  # event_sources.SqsMapping, polled by the stack once deployed
        self._post: list[Callable[[], None]] = []

    def client(self, name: str) -> Any:
        if name not in self.clients:
            self.clients[name] = self.session.client(name, endpoint_url=self.endpoint_url, region_name=self.region)
        return self.clients[name]

    def _name(self, logical: str, limit: int = 64) -> str:
        return f"{self.stack_name}-{logical}"[:limit]

    # ----------------------------------------------------------- entry
    def deploy(self, template_path: Path, overrides: dict[str, Any]) -> Deployment:
        sam = load_template(template_path)
        params: dict[str, Any] = {}
        for name, spec in (sam.get("Parameters") or {}).items():
            if name in overrides:
                params[name] = str(overrides[name])
            elif "Default" in spec:
                params[name] = spec["Default"] if isinstance(spec["Default"], str) else str(spec["Default"])
            else:
                raise DeployError(f"template parameter {name} has no default: pass it in parameters")
            if spec.get("Type", "String").startswith("List<") or spec.get("Type") == "CommaDelimitedList":
                params[name] = [x.strip() for x in params[name].split(",")] if params[name] else []
        unknown = set(overrides) - set(sam.get("Parameters") or {})
        if unknown:
            raise DeployError(f"unknown template parameters: {sorted(unknown)}")
        for name, spec in (sam.get("Parameters") or {}).items():
            _check_parameter(name, spec, params[name])
        cfn = sam_translate(sam, {k: v for k, v in params.items()}, self.root, self.region)
        pseudo = {"AWS::Region": self.region, "AWS::AccountId": ACCOUNT, "AWS::Partition": "aws",
                  "AWS::StackName": self.stack_name, "AWS::URLSuffix": "amazonaws.com",
                  # A UUID per stack name, as CloudFormation gives each stack its own: job names carry its first group.
                  "AWS::StackId": f"arn:aws:cloudformation:{self.region}:{ACCOUNT}:stack/{self.stack_name}/"
                                  f"{uuid.uuid5(uuid.NAMESPACE_URL, f'{self.region}/{self.stack_name}')}",
                  "AWS::NotificationARNs": []}
        rv = Resolver(params, pseudo, cfn.get("Conditions") or {}, cfn.get("Mappings") or {})
        resources = cfn["Resources"]
        order = self._order(resources)
        for logical in order:
            res = resources[logical]
            if "Condition" in res and not rv.condition(res["Condition"]):
                continue
            props = res.get("Properties") or {}
            typ = res["Type"]
            creator = getattr(self, "_create_" + typ.replace("::", "_"), None)
            try:
                if creator is None:
                    deployed = Deployed(logical, typ, ref=self._placeholder_arn(typ, logical),
                                        skipped="not emulated locally")
                else:
                    deployed = creator(logical, rv, props)
            except DeployError:
                raise
            except Exception as exc:
                raise DeployError(f"{logical} ({typ}): {exc}") from exc
            rv.deployed[logical] = deployed
        for apply in self._post:
            apply()
        outputs = {}
        for name, out in (cfn.get("Outputs") or {}).items():
            if "Condition" in out and not rv.condition(out["Condition"]):
                continue
            outputs[name] = str(rv.resolve(out["Value"]))
        return Deployment(outputs=outputs, resources=rv.deployed, functions=self.functions,
                          function_urls=self.function_urls, parameters=params, sqs_mappings=self.sqs_mappings)

    def _order(self, resources: dict[str, Any]) -> list[str]:
        deps: dict[str, set[str]] = {}
        for logical, res in resources.items():
            props = dict(res.get("Properties") or {})
            if res["Type"] == "AWS::S3::Bucket":
                props.pop("NotificationConfiguration", None)  # applied after everything (breaks the cycle)
            d = _references(props) & set(resources)
            depends = res.get("DependsOn") or []
            d |= set([depends] if isinstance(depends, str) else depends) & set(resources)
            deps[logical] = d - {logical}
        order: list[str] = []
        ready = sorted(k for k, v in deps.items() if not v)
        remaining = {k: set(v) for k, v in deps.items() if v}
        while ready:
            n = ready.pop(0)
            order.append(n)
            for k in list(remaining):
                remaining[k].discard(n)
                if not remaining[k]:
                    del remaining[k]
                    ready.append(k)
            ready.sort()
        if remaining:
            raise DeployError(f"circular dependencies between resources: {sorted(remaining)}")
        return order

    def _placeholder_arn(self, typ: str, logical: str) -> str:
        service = typ.split("::")[1].lower()
        return f"arn:aws:{service}:{self.region}:{ACCOUNT}:{logical}"

    # ----------------------------------------------------------- resource types
    def _create_AWS_IAM_Role(self, logical: str, rv: Resolver, props: dict[str, Any]) -> Deployed:
        name = (props.get("RoleName") and rv.resolve(props["RoleName"])) or self._name(logical)
        doc = rv.resolve(props.get("AssumeRolePolicyDocument", {}))
        iam = self.client("iam")
        try:
            arn = iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(doc))["Role"]["Arn"]
        except iam.exceptions.EntityAlreadyExistsException:
            arn = iam.get_role(RoleName=name)["Role"]["Arn"]
        return Deployed(logical, "AWS::IAM::Role", ref=name, attrs={"Arn": arn, "RoleId": name})

    def _create_AWS_S3_Bucket(self, logical: str, rv: Resolver, props: dict[str, Any]) -> Deployed:
        name = rv.resolve(props["BucketName"]) if "BucketName" in props else self._name(logical.lower(), 63)
        s3 = self.client("s3")
        kwargs: dict[str, Any] = {"Bucket": name}
        if self.region != "us-east-1":
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": self.region}
        s3.create_bucket(**kwargs)
        if (props.get("VersioningConfiguration") or {}).get("Status") == "Enabled":
            s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
        if "NotificationConfiguration" in props:
            raw = props["NotificationConfiguration"]
            self._post.append(lambda: self._apply_notifications(name, rv.resolve(raw)))
        return Deployed(logical, "AWS::S3::Bucket", ref=name,
                        attrs={"Arn": f"arn:aws:s3:::{name}", "DomainName": f"{name}.s3.amazonaws.com",
                               "RegionalDomainName": f"{name}.s3.{self.region}.amazonaws.com"})

    def _apply_notifications(self, bucket: str, config: dict[str, Any]) -> None:
        lambdas = []
        for item in config.get("LambdaConfigurations", []):
            rules = (((item.get("Filter") or {}).get("S3Key") or {}).get("Rules")) or []
            entry: dict[str, Any] = {"LambdaFunctionArn": item["Function"], "Events": [item["Event"]]}
            if rules:
                # S3 accepts prefix/suffix in any case; moto matches lower-case names only.
                entry["Filter"] = {"Key": {"FilterRules": [{"Name": r["Name"].lower(), "Value": r["Value"]}
                                                           for r in rules]}}
            lambdas.append(entry)
        queues = []
        for item in config.get("QueueConfigurations", []):
            rules = (((item.get("Filter") or {}).get("S3Key") or {}).get("Rules")) or []
            entry = {"QueueArn": item["Queue"], "Events": [item["Event"]]}
            if rules:
                entry["Filter"] = {"Key": {"FilterRules": [{"Name": r["Name"].lower(), "Value": r["Value"]}
                                                           for r in rules]}}
            queues.append(entry)
        notification: dict[str, Any] = {"LambdaFunctionConfigurations": lambdas}
        if queues:
            notification["QueueConfigurations"] = queues
        self.client("s3").put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration=notification)

    def _create_AWS_DynamoDB_Table(self, logical: str, rv: Resolver, props: dict[str, Any]) -> Deployed:
        p = rv.resolve(props)
        name = p.get("TableName") or self._name(logical, 255)
        kwargs: dict[str, Any] = {"TableName": name, "KeySchema": p["KeySchema"],
                                  "AttributeDefinitions": p["AttributeDefinitions"],
                                  "BillingMode": p.get("BillingMode", "PROVISIONED")}
        if kwargs["BillingMode"] == "PROVISIONED":
            kwargs["ProvisionedThroughput"] = p.get("ProvisionedThroughput") or {"ReadCapacityUnits": 5,
                                                                                 "WriteCapacityUnits": 5}
        if p.get("GlobalSecondaryIndexes"):
            gsis = copy.deepcopy(p["GlobalSecondaryIndexes"])
            if kwargs["BillingMode"] == "PROVISIONED":
                for g in gsis:
                    g.setdefault("ProvisionedThroughput", {"ReadCapacityUnits": 5, "WriteCapacityUnits": 5})
            kwargs["GlobalSecondaryIndexes"] = gsis
        if p.get("StreamSpecification"):
            kwargs["StreamSpecification"] = {"StreamEnabled": True, **p["StreamSpecification"]}
        ddb = self.client("dynamodb")
        desc = ddb.create_table(**kwargs)["TableDescription"]
        ttl = p.get("TimeToLiveSpecification")
        if ttl and str(ttl.get("Enabled")).lower() == "true":
            ddb.update_time_to_live(TableName=name, TimeToLiveSpecification={
                "Enabled": True, "AttributeName": ttl["AttributeName"]})
        return Deployed(logical, "AWS::DynamoDB::Table", ref=name,
                        attrs={"Arn": desc["TableArn"], "StreamArn": desc.get("LatestStreamArn", "")})

    def _create_AWS_SNS_Topic(self, logical: str, rv: Resolver, props: dict[str, Any]) -> Deployed:
        p = rv.resolve(props)
        name = p.get("TopicName") or self._name(logical, 256)
        arn = self.client("sns").create_topic(Name=name)["TopicArn"]
        for sub in p.get("Subscription", []):
            self.client("sns").subscribe(TopicArn=arn, Protocol=sub["Protocol"], Endpoint=sub["Endpoint"])
        return Deployed(logical, "AWS::SNS::Topic", ref=arn, attrs={"TopicArn": arn, "TopicName": name})

    def _create_AWS_SNS_Subscription(self, logical: str, rv: Resolver, props: dict[str, Any]) -> Deployed:
        p = rv.resolve(props)
        kwargs: dict[str, Any] = {"TopicArn": p["TopicArn"], "Protocol": p["Protocol"], "Endpoint": p["Endpoint"]}
        attrs = {}
        if "FilterPolicy" in p:
            attrs["FilterPolicy"] = json.dumps(p["FilterPolicy"]) if not isinstance(p["FilterPolicy"], str) \
                else p["FilterPolicy"]
        if "RedrivePolicy" in p:
            attrs["RedrivePolicy"] = json.dumps(p["RedrivePolicy"])
        if attrs:
            kwargs["Attributes"] = attrs
        arn = self.client("sns").subscribe(**kwargs)["SubscriptionArn"]
        return Deployed(logical, "AWS::SNS::Subscription", ref=arn)

    def _create_AWS_SQS_Queue(self, logical: str, rv: Resolver, props: dict[str, Any]) -> Deployed:
        p = rv.resolve(props)
        name = p.get("QueueName") or self._name(logical, 80)
        attrs = {k: str(v) for k, v in p.items()
                 if k in ("MessageRetentionPeriod", "VisibilityTimeout", "DelaySeconds", "FifoQueue")}
        if "RedrivePolicy" in p:  # moto moves a message to the DLQ after maxReceiveCount receives
            attrs["RedrivePolicy"] = json.dumps(p["RedrivePolicy"]) if not isinstance(p["RedrivePolicy"], str) \
                else p["RedrivePolicy"]
        sqs = self.client("sqs")
        url = sqs.create_queue(QueueName=name, Attributes=attrs)["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        return Deployed(logical, "AWS::SQS::Queue", ref=url, attrs={"Arn": arn, "QueueName": name, "QueueUrl": url})

    def _create_AWS_SecretsManager_Secret(self, logical: str, rv: Resolver, props: dict[str, Any]) -> Deployed:
        p = rv.resolve(props)
        name = p.get("Name") or self._name(logical, 256)
        value = p.get("SecretString")
        if value is None:
            gen = p.get("GenerateSecretString") or {}
            value = json.dumps({gen["GenerateStringKey"]: "local"}) if gen.get("GenerateStringKey") else "local"
        arn = self.client("secretsmanager").create_secret(Name=name, SecretString=value)["ARN"]
        return Deployed(logical, "AWS::SecretsManager::Secret", ref=arn, attrs={"Id": arn})

    def _create_AWS_Logs_LogGroup(self, logical: str, rv: Resolver, props: dict[str, Any]) -> Deployed:
        p = rv.resolve(props)
        name = p.get("LogGroupName") or self._name(logical, 512)
        logs = self.client("logs")
        with contextlib.suppress(logs.exceptions.ResourceAlreadyExistsException):
            logs.create_log_group(logGroupName=name)
        return Deployed(logical, "AWS::Logs::LogGroup", ref=name,
                        attrs={"Arn": f"arn:aws:logs:{self.region}:{ACCOUNT}:log-group:{name}:*"})

    def _create_AWS_Lambda_LayerVersion(self, logical: str, rv: Resolver, props: dict[str, Any]) -> Deployed:
        # The layer's package (yoloops_core) is importable in this process already (editable install).
        name = rv.resolve(props.get("LayerName")) or self._name(logical)
        return Deployed(logical, "AWS::Lambda::LayerVersion",
                        ref=f"arn:aws:lambda:{self.region}:{ACCOUNT}:layer:{name}:1",
                        skipped="layer code is imported in-process")

    def _create_AWS_Lambda_Function(self, logical: str, rv: Resolver, props: dict[str, Any]) -> Deployed:
        p = rv.resolve({k: v for k, v in props.items() if k not in ("Code",)})
        code = props.get("Code") or {}
        key = rv.resolve(code.get("S3Key", ""))
        if rv.resolve(code.get("S3Bucket")) != CODE_BUCKET or not key:
            raise DeployError(f"{logical}: only local CodeUri directories can run in-process")
        code_dir = (self.root / key).resolve()
        handler = p.get("Handler", "app.lambda_handler")
        if not (code_dir / (handler.rpartition(".")[0].replace(".", "/") + ".py")).exists():
            raise DeployError(f"{logical}: handler {handler} not found in {code_dir}")
        name = p.get("FunctionName") or self._name(logical)
        env = {k: ("" if v is NO_VALUE else str(v).lower() if isinstance(v, bool) else str(v))
               for k, v in ((p.get("Environment") or {}).get("Variables") or {}).items()}
        lam = self.client("lambda")
        arn = lam.create_function(
            FunctionName=name, Runtime=p.get("Runtime", "python3.12"), Role=p["Role"], Handler=handler,
            Code={"ZipFile": _tiny_zip()}, Environment={"Variables": env},
            Timeout=int(p.get("Timeout", 3)), MemorySize=int(p.get("MemorySize", 128)),
        )["FunctionArn"]
        spec = FunctionSpec(name=name, logical_id=logical, code_dir=code_dir, handler=handler,
                            environment=env, timeout_s=int(p.get("Timeout", 3)),
                            memory_mb=int(p.get("MemorySize", 128)), arn=arn,
                            dead_letter_arn=(p.get("DeadLetterConfig") or {}).get("TargetArn"))
        self.runtime.register(spec)
        self.functions[logical] = spec
        return Deployed(logical, "AWS::Lambda::Function", ref=name, attrs={"Arn": arn})

    def _create_AWS_Lambda_Url(self, logical: str, rv: Resolver, props: dict[str, Any]) -> Deployed:
        p = rv.resolve(props)
        target = p["TargetFunctionArn"]
        spec = self.runtime.resolve(target)
        url = self.function_url_base(spec.name)
        self.function_urls[spec.logical_id] = spec.name
        arn = spec.arn
        return Deployed(logical, "AWS::Lambda::Url", ref=arn, attrs={"FunctionUrl": url, "FunctionArn": arn})

    def _create_AWS_StepFunctions_StateMachine(self, logical: str, rv: Resolver, props: dict[str, Any]) -> Deployed:
        p = rv.resolve({k: v for k, v in props.items() if k not in ("DefinitionString", "Definition")})
        if "DefinitionS3Location" in p:
            loc = p["DefinitionS3Location"]
            if loc.get("Bucket") != CODE_BUCKET:
                raise DeployError(f"{logical}: DefinitionS3Location must be a local file")
            text = (self.root / loc["Key"]).read_text()
        elif "DefinitionString" in props:
            text = str(rv.resolve(props["DefinitionString"]))
        elif "Definition" in props:
            text = json.dumps(rv.resolve(props["Definition"]))
        else:
            raise DeployError(f"{logical}: no definition")
        subs = p.get("DefinitionSubstitutions") or {}

        def substitute(m: re.Match[str]) -> str:
            name = m.group(1)
            if name not in subs:
                raise DeployError(f"{logical}: definition uses ${{{name}}} but DefinitionSubstitutions lacks it")
            value = subs[name]
            return json.dumps(value)[1:-1] if isinstance(value, str) else json.dumps(value)

        definition = _SUB_RE.sub(substitute, text)
        json.loads(definition)  # a bad substitution must fail here, not at the first execution
        name = p.get("StateMachineName") or self._name(logical, 80)
        arn = self.client("stepfunctions").create_state_machine(
            name=name, definition=definition, roleArn=p.get("RoleArn", f"arn:aws:iam::{ACCOUNT}:role/local"),
            type=p.get("StateMachineType", "STANDARD"),
        )["stateMachineArn"]
        return Deployed(logical, "AWS::StepFunctions::StateMachine", ref=arn, attrs={"Name": name, "Arn": arn})

    def _create_AWS_Events_Rule(self, logical: str, rv: Resolver, props: dict[str, Any]) -> Deployed:
        p = rv.resolve(props)
        name = p.get("Name") or self._name(logical)
        events = self.client("events")
        kwargs: dict[str, Any] = {"Name": name, "State": p.get("State", "ENABLED")}
        if "EventPattern" in p:
            kwargs["EventPattern"] = json.dumps(p["EventPattern"]) if not isinstance(p["EventPattern"], str) \
                else p["EventPattern"]
        if "ScheduleExpression" in p:
            kwargs["ScheduleExpression"] = p["ScheduleExpression"]
        if p.get("EventBusName"):
            kwargs["EventBusName"] = p["EventBusName"]
        arn = events.put_rule(**kwargs)["RuleArn"]
        targets = [{k: v for k, v in t.items() if k in ("Id", "Arn", "Input", "InputPath", "RoleArn")}
                   for t in p.get("Targets", [])]
        if targets:
            events.put_targets(Rule=name, Targets=targets, **({"EventBusName": p["EventBusName"]}
                                                               if p.get("EventBusName") else {}))
        return Deployed(logical, "AWS::Events::Rule", ref=name, attrs={"Arn": arn})

    def _create_AWS_Lambda_EventSourceMapping(self, logical: str, rv: Resolver, props: dict[str, Any]) -> Deployed:
        """SQS sources get a poller thread (moto never polls); other sources are not emulated."""
        from yoloops.local.event_sources import mapping_from_properties

        p = rv.resolve(props)
        source = str(p.get("EventSourceArn", ""))
        if ":sqs:" not in source:
            return Deployed(logical, "AWS::Lambda::EventSourceMapping", ref=logical, skipped="only SQS is emulated")
        spec = self.runtime.resolve(p["FunctionName"])
        sqs = self.client("sqs")
        url = sqs.get_queue_url(QueueName=source.rsplit(":", 1)[-1])["QueueUrl"]
        self.sqs_mappings.append(mapping_from_properties(p, spec.name, url))
        # Not registered with moto: its SQS backend would invoke the function once per message on send.
        return Deployed(logical, "AWS::Lambda::EventSourceMapping", ref=f"{spec.name}-{logical}")

    def _create_AWS_ECR_Repository(self, logical: str, rv: Resolver, props: dict[str, Any]) -> Deployed:
        p = rv.resolve(props)
        name = p.get("RepositoryName") or self._name(logical.lower(), 256)
        ecr = self.client("ecr")
        kwargs: dict[str, Any] = {"repositoryName": name}
        if p.get("ImageTagMutability"):
            kwargs["imageTagMutability"] = p["ImageTagMutability"]
        try:
            repo = ecr.create_repository(**kwargs)["repository"]
        except ecr.exceptions.RepositoryAlreadyExistsException:
            repo = ecr.describe_repositories(repositoryNames=[name])["repositories"][0]
        return Deployed(logical, "AWS::ECR::Repository", ref=name,
                        attrs={"Arn": repo["repositoryArn"], "RepositoryUri": repo["repositoryUri"]})

    def _create_AWS_Lambda_EventInvokeConfig(self, logical: str, rv: Resolver, props: dict[str, Any]) -> Deployed:
        p = rv.resolve(props)
        spec = self.runtime.resolve(p["FunctionName"])
        if "MaximumRetryAttempts" in p:
            spec.max_async_retries = int(p["MaximumRetryAttempts"])
        on_failure = ((p.get("DestinationConfig") or {}).get("OnFailure") or {}).get("Destination")
        if on_failure and ":sqs:" in on_failure:
            spec.dead_letter_arn = on_failure
        return Deployed(logical, "AWS::Lambda::EventInvokeConfig", ref=f"{spec.name}$LATEST")
