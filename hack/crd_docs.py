"""Generate docs/crd-reference.md from the ModelApp CRD schema (the schema is the truth; this only reads it).

python hack/crd_docs.py          # write docs/crd-reference.md
python hack/crd_docs.py --check  # exit 1 if the file is out of date (make test runs this)
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
CRD = REPO / "crds" / "modelapp.dev_modelapps.yaml"
OUT = REPO / "docs" / "crd-reference.md"


def _type(node: dict[str, Any]) -> str:
    if node.get("x-kubernetes-int-or-string"):
        return "int or string"
    if "enum" in node:
        return " \\| ".join(f"`{v}`" for v in node["enum"])
    t = str(node.get("type", "object"))
    if t == "array":
        return f"array of {_type(node.get('items', {}))}"
    if t == "object" and "additionalProperties" in node and "properties" not in node:
        return f"map of {_type(node['additionalProperties'])}"
    return t


def _constraints(node: dict[str, Any]) -> str:
    parts = []
    for key, label in (
        ("minimum", "≥"),
        ("maximum", "≤"),
        ("minLength", "length ≥"),
        ("maxLength", "length ≤"),
        ("maxItems", "items ≤"),
        ("maxProperties", "entries ≤"),
    ):
        if key in node:
            parts.append(f"{label} {node[key]}")
    if node.get("x-kubernetes-list-type") == "map":
        parts.append(f"unique by {', '.join(node.get('x-kubernetes-list-map-keys', []))}")
    # Rules on each item or map value are listed with the array or map that holds them.
    inner = node.get("items") if node.get("type") == "array" else node.get("additionalProperties")
    rules = [*node.get("x-kubernetes-validations", [])]
    if isinstance(inner, dict):
        rules += inner.get("x-kubernetes-validations", [])
    for rule in rules:
        parts.append(f"rejected with: “{' '.join(str(rule['message']).split())}”")
    return "; ".join(parts)


def _rows(node: dict[str, Any], path: str, required: set[str], out: list[str]) -> None:
    for name, child in (node.get("properties") or {}).items():
        field = f"{path}.{name}" if path else name
        default = (
            f"`{yaml.safe_dump(child['default'], default_flow_style=True).strip()}`"
            if "default" in child
            else ""
        )
        desc = " ".join(str(child.get("description", "")).split())
        req = "yes" if name in required else ""
        cons = _constraints(child)
        out.append(f"| `{field}` | {_type(child)} | {req} | {default} | {desc} | {cons} |")
        if child.get("type") == "object" or "properties" in child:
            _rows(child, field, set(child.get("required", [])), out)
        items = child.get("items") or {}
        if child.get("type") == "array" and "properties" in items:
            _rows(items, f"{field}[]", set(items.get("required", [])), out)


def render() -> str:
    crd = yaml.safe_load(CRD.read_text())
    version = crd["spec"]["versions"][0]
    schema = version["schema"]["openAPIV3Schema"]
    spec = schema["properties"]["spec"]
    lines = [
        "# ModelApp reference",
        "",
        f"`{crd['spec']['group']}/{version['name']}` `{crd['spec']['names']['kind']}`. Generated from",
        "`crds/modelapp.dev_modelapps.yaml` by `hack/crd_docs.py`; edit the schema, then run `make docs`.",
        "",
        " ".join(str(schema.get("description", "")).split()),
        "",
        "Rules on the whole object:",
        "",
    ]
    for rule in schema.get("x-kubernetes-validations", []) + spec.get("x-kubernetes-validations", []):
        lines.append(f"- {' '.join(str(rule['message']).split())}")
    lines += [
        "",
        "## spec",
        "",
        "| field | type | required | default | meaning | checks |",
        "|---|---|---|---|---|---|",
    ]
    _rows(spec, "spec", set(spec.get("required", [])), lines)
    lines += [
        "",
        "## status",
        "",
        "| field | type | required | default | meaning | checks |",
        "|---|---|---|---|---|---|",
    ]
    _rows(schema["properties"]["status"], "status", set(), lines)
    lines += ["", "## Printer columns", ""]
    for col in version.get("additionalPrinterColumns", []):
        lines.append(f"- `{col['name'].upper()}`: `{col['jsonPath']}`")
    return "\n".join(lines) + "\n"


def main() -> int:
    text = render()
    if "--check" in sys.argv:
        if not OUT.exists() or OUT.read_text() != text:
            print(f"{OUT.relative_to(REPO)} is out of date: run `make docs`", file=sys.stderr)
            return 1
        return 0
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(text)
    print(f"wrote {OUT.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
