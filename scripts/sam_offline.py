"""Offline SAM transform of template.yaml and cfn-lint of the result (no AWS account, no network).

`sam validate --lint` lints the SAM template as written and misses errors that only show after the
transform (bad runtimes, !Ref to nothing, broken policy templates). This module runs the same transform
CloudFormation runs (aws-sam-translator) with a fixed managed-policy map instead of IAM ListPolicies,
writes the translated template and lints it with cfn-lint.

Used by `make static` (`python scripts/sam_offline.py`) and by tests/static; the local stack can reuse
`translate()` to deploy the template into moto.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "template.yaml"
OUT_DIR = ROOT / ".aws-sam" / "static"
DEFAULT_REGION = "us-east-1"
PSEUDO_ACCOUNT = "123456789012"

# Only managed policies named in template.yaml need to be here (the translator resolves names through
# this map); SAM's own additions (X-Ray, basic execution role) are built as ARNs and need no entry.
MANAGED_POLICIES: dict[str, str] = {
    "AWSLambdaBasicExecutionRole": "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole",
    "AWSXrayWriteOnlyAccess": "arn:aws:iam::aws:policy/AWSXrayWriteOnlyAccess",
}


# Local-path properties `sam package` uploads, by resource type.
_ARTIFACT_PROPERTIES = {
    "AWS::Serverless::Function": "CodeUri",
    "AWS::Serverless::LayerVersion": "ContentUri",
    "AWS::Serverless::StateMachine": "DefinitionUri",
}


class PackageError(ValueError):
    """A local path in the template (CodeUri, ContentUri, DefinitionUri) does not exist."""


class _OfflinePolicyLoader:
    """Stands in for samtranslator's ManagedPolicyLoader, which calls IAM ListPolicies."""

    def load(self) -> dict[str, str]:
        return dict(MANAGED_POLICIES)


def load_template(path: Path = TEMPLATE) -> dict[str, Any]:
    """Parse a SAM/CloudFormation YAML template, short-form intrinsics (!Ref, !Sub...) included."""
    from samtranslator.yaml_helper import yaml_parse

    return yaml_parse(path.read_text())


def package_local_paths(
    template: dict[str, Any], *, base_dir: Path = ROOT, bucket: str = "yoloops-offline-package"
) -> dict[str, Any]:
    """What `sam package` does to local paths, offline: a new template whose code locations are S3 URIs.

    State machine definitions are inlined (`Definition`) instead, so cfn-lint also checks the ASL with
    its DefinitionSubstitutions. Every path must exist (as `sam build` requires).
    """
    packaged = json.loads(json.dumps(template))
    missing = []
    for logical_id, resource in packaged.get("Resources", {}).items():
        prop = _ARTIFACT_PROPERTIES.get(resource.get("Type", ""))
        location = resource.get("Properties", {}).get(prop) if prop else None
        if not isinstance(location, str) or location.startswith("s3://"):
            continue
        path = (base_dir / location).resolve()
        if not path.exists():
            missing.append(f"{logical_id}.{prop}: {location} does not exist")
            continue
        props = resource["Properties"]
        if prop == "DefinitionUri":
            del props[prop]
            props["Definition"] = json.loads(path.read_text())
        else:
            props[prop] = f"s3://{bucket}/{location.strip('/')}.zip"
    if missing:
        raise PackageError("; ".join(missing))
    return packaged


def translate(
    template: dict[str, Any] | None = None,
    *,
    region: str = DEFAULT_REGION,
    parameter_values: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The SAM transform, offline: returns the plain CloudFormation template (a new dict).

    Raises samtranslator's InvalidDocumentException (with every problem) on an invalid SAM template.
    """
    # The translator asks boto3 for the region to pick the partition; never let it look elsewhere.
    os.environ.setdefault("AWS_DEFAULT_REGION", region)
    from samtranslator.translator.transform import transform

    source = load_template() if template is None else template
    params = {"AWS::Region": region, "AWS::AccountId": PSEUDO_ACCOUNT, "AWS::Partition": "aws"}
    params.update(parameter_values or {})
    # transform() mutates its input; give it a copy so callers keep what they passed.
    return fold_literal_joins(transform(json.loads(json.dumps(source)), params, _OfflinePolicyLoader()))


def fold_literal_joins(value: Any) -> Any:
    """Fn::Join of literal strings -> the joined string (what CloudFormation would make of it).

    An inlined state machine becomes a Join of one literal per line of its JSON (850 for the training
    workflow); cfn-lint resolves a Join by one nested generator per element, past Python 3.12's C recursion
    limit ("Cannot recover from stack overflow"). Joins that hold any intrinsic are left as they are.
    """
    if isinstance(value, list):
        return [fold_literal_joins(v) for v in value]
    if not isinstance(value, dict):
        return value
    join = value.get("Fn::Join") if len(value) == 1 else None
    if (isinstance(join, list) and len(join) == 2 and isinstance(join[0], str) and isinstance(join[1], list)
            and all(isinstance(part, str) for part in join[1])):
        return join[0].join(join[1])
    return {k: fold_literal_joins(v) for k, v in value.items()}


def cfn_lint(translated_path: Path, *, region: str = DEFAULT_REGION) -> subprocess.CompletedProcess[str]:
    """Run the pinned cfn-lint (same interpreter's venv) on a translated template."""
    cfn_lint_bin = Path(sys.executable).with_name("cfn-lint")
    cmd = [str(cfn_lint_bin), "--regions", region, "--format", "parseable", "--", str(translated_path)]
    return subprocess.run(cmd, capture_output=True, text=True, check=False)


def translate_and_lint(
    template_path: Path = TEMPLATE, out_dir: Path = OUT_DIR, *, region: str = DEFAULT_REGION
) -> tuple[int, str]:
    """Translate `template_path` and cfn-lint the result. Returns (exit code, report text).

    Exit code 0 = no errors or warnings; cfn-lint's own codes otherwise (2 = error, 4 = warning,
    6 = both; 8 = informational only, which we accept); 1 = the transform itself failed.
    """
    from samtranslator.model.exceptions import InvalidDocumentException

    try:
        packaged = package_local_paths(load_template(template_path), base_dir=template_path.parent)
        translated = translate(packaged, region=region)
    except PackageError as exc:
        return 1, f"{template_path}: {exc}"
    except InvalidDocumentException as exc:
        problems = "\n".join(f"  - {cause.message}" for cause in exc.causes)
        return 1, f"SAM transform failed for {template_path}:\n{problems}"
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / "template.json"
    out.write_text(json.dumps(translated, indent=2, sort_keys=True))
    result = cfn_lint(out, region=region)
    code = 0 if result.returncode in (0, 8) else result.returncode
    report = (result.stdout + result.stderr).strip()
    resources = len(translated.get("Resources", {}))
    summary = f"translated {template_path.name}: {resources} CloudFormation resources -> {out}"
    return code, summary + ("\n" + report if report else "\ncfn-lint: no findings")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("template", nargs="?", type=Path, default=TEMPLATE)
    parser.add_argument("--region", default=DEFAULT_REGION)
    parser.add_argument("--out-dir", type=Path, default=OUT_DIR)
    args = parser.parse_args(argv)
    code, report = translate_and_lint(args.template, args.out_dir, region=args.region)
    print(report)
    return code


if __name__ == "__main__":
    sys.exit(main())
