"""IAM statements of the translated template as plain text, for the least-privilege checks.

`python tests/static/iam_view.py [template.yaml]` prints, per role, every Allow as `actions -> resources`
(the before/after view used to review policy changes).
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
# !Select [0, !Split ["-", !Select [2, !Split ["/", !Ref AWS::StackId]]]]: the first group of the stack UUID.
STACK_CODE_EXPR = {"Fn::Select": [0, {"Fn::Split": [
    "-", {"Fn::Select": [2, {"Fn::Split": ["/", {"Ref": "AWS::StackId"}]}]}]}]}


def _sam_offline():
    spec = importlib.util.spec_from_file_location("sam_offline", ROOT / "scripts" / "sam_offline.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def translated(path: Path = ROOT / "template.yaml", **parameters: Any) -> dict[str, Any]:
    sam = _sam_offline()
    packaged = sam.package_local_paths(sam.load_template(path), base_dir=path.parent)
    return sam.translate(packaged, parameter_values=parameters or None)


def render(value: Any) -> str:
    """An intrinsic as the text it stands for: {"Ref": "X"} -> ${X}, Fn::Sub with variables inlined."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return ",".join(render(v) for v in value)
    if isinstance(value, dict) and len(value) == 1:
        (key, arg), = value.items()
        if key == "Ref":
            return "${" + arg + "}"
        if key == "Fn::GetAtt":
            return "${" + (".".join(arg) if isinstance(arg, list) else arg) + "}"
        if key == "Fn::Sub":
            text, variables = (arg, {}) if isinstance(arg, str) else (arg[0], arg[1])
            return re.sub(r"\$\{([^}!]+)\}",
                          lambda m: render(variables[m.group(1)]) if m.group(1) in variables else m.group(0), text)
        if key == "Fn::Join":
            return render(arg[0]).join(render(v) for v in arg[1])
        if key == "Fn::If":
            return "if(" + arg[0] + "," + render(arg[1]) + "," + render(arg[2]) + ")"
        if key == "Fn::Select" and arg == STACK_CODE_EXPR["Fn::Select"]:
            return "${StackCode}"  # 8 hex characters of the stack id (template STACK_CODE)
    return repr(value)


def provider_schema(resource_type: str) -> dict[str, Any]:
    """CloudFormation's resource provider schema of a type, as cfn-lint ships it (us-east-1)."""
    import json

    import cfnlint

    data = Path(cfnlint.__file__).parent / "data" / "schemas"
    index = json.loads((data / "providers" / "us-east-1.json").read_text())
    return json.loads((data / "resources" / f"{index[resource_type]}.json").read_text())


def handler_permissions(resource_type: str) -> set[str]:
    """What CloudFormation's handlers call to create, read, update and delete a resource of that type."""
    handlers = provider_schema(resource_type).get("handlers", {})
    return {p for step in ("create", "read", "update", "delete")
            for p in handlers.get(step, {}).get("permissions", [])}


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def allow_statements(cfn: dict[str, Any]) -> list[tuple[str, list[str], list[str], dict[str, Any]]]:
    """(role logical id, actions, rendered resources, condition) of every Allow in an inline role policy."""
    out = []
    for logical, res in cfn["Resources"].items():
        if res["Type"] != "AWS::IAM::Role":
            continue
        for policy in res["Properties"].get("Policies") or []:
            for st in as_list(policy["PolicyDocument"]["Statement"]):
                if st.get("Effect") == "Allow":
                    out.append((logical, [render(a) for a in as_list(st["Action"])],
                                [render(r) for r in as_list(st.get("Resource", []))], st.get("Condition") or {}))
    return out


def managed_policies(cfn: dict[str, Any]) -> dict[str, list[str]]:
    return {logical: [render(a).rsplit("/", 1)[-1] for a in res["Properties"].get("ManagedPolicyArns") or []]
            for logical, res in cfn["Resources"].items() if res["Type"] == "AWS::IAM::Role"}


def view(cfn: dict[str, Any]) -> str:
    lines: list[str] = []
    managed = managed_policies(cfn)
    current = None
    for role, actions, resources, condition in sorted(allow_statements(cfn), key=lambda x: x[0]):
        if role != current:
            current = role
            lines.append(f"{role}  (managed: {', '.join(managed[role]) or '-'})")
        short = [r.replace("arn:${AWS::Partition}:", "").replace("${AWS::Region}:${AWS::AccountId}:", "")
                 for r in resources]
        cond = f"  if {condition}" if condition else ""
        lines.append(f"  {', '.join(sorted(actions))} -> {', '.join(short)}{cond}")
    return "\n".join(lines)


if __name__ == "__main__":
    print(view(translated(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "template.yaml")))
