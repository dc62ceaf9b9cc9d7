"""JSON schemas for kubeconform, made from the Kubernetes API's own OpenAPI documents.

kubeconform validates each manifest against a JSON schema it finds by a path template
(`-schema-location`); its default location is a GitHub repository this project's machines
cannot reach. This module writes the same layout from sources they can reach (both Go
modules on the Go module proxy, fetched by deploy/kubeconform-tool.sh):

- the Kubernetes release's OpenAPI v3 documents (`k8s.io/kubernetes@<release>`,
  `api/openapi-spec/v3/*.json`, one per API group version) become
  `<out>/v<release>-standalone-strict/<kind>[-<group>]-<version>.json`, the layout of
  kubeconform's default location (`{{ .NormalizedKubernetesVersion }}-standalone{{ .StrictSuffix }}/
  {{ .ResourceKind }}{{ .KindSuffix }}.json`), where the group is its first dot-separated part
  (`networking.k8s.io` -> `networking`) and the core group has none (`service-v1.json`);
- CustomResourceDefinitions (prometheus-operator's `ServiceMonitor`) become
  `<out>/crds/<group>/<kind>_<version>.json`, for `{{ .Group }}/{{ .ResourceKind }}_{{ .ResourceAPIVersion }}.json`.

Each schema is standalone (the definitions it refers to are copied into its own
`definitions`, so recursive types stay references) and strict: an object that lists its
properties refuses any other (`additionalProperties: false`, what `kubectl --validate=strict`
and the API server's field validation refuse as unknown fields), except where the API says
it keeps unknown fields (`x-kubernetes-preserve-unknown-fields`). `nullable` adds `null` to
the type; an optional field is otherwise not nullable, a little stricter than the API server,
which takes an explicit null as unset (a null in a rendered manifest is a template's slip).
The OpenAPI v3 documents already spell the API's lenient types (a Quantity is a string or a
number, an IntOrString an integer or a string); descriptions are dropped (they are 80% of
the bytes and kubeconform does not use them).

    python3 deploy/kubernetes_schemas.py --openapi-v3 <dir> --release 1.34.4 --crd <file.json> ... --out <dir>

Standard library only: deploy/kubeconform-tool.sh runs it with any Python 3.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

DRAFT = "http://json-schema.org/draft-04/schema#"  # OpenAPI 3.0's schemas are draft-04's, extended
COMPONENTS_PREFIX = "#/components/schemas/"
DEFINITIONS_PREFIX = "#/definitions/"
GVK = "x-kubernetes-group-version-kind"
PRESERVE_UNKNOWN_FIELDS = "x-kubernetes-preserve-unknown-fields"
INT_OR_STRING = "x-kubernetes-int-or-string"
DROPPED = frozenset({"description", "example", "externalDocs"})
# Keywords whose value maps names to schemas (not a schema itself).
SCHEMA_MAPS = frozenset({"properties", "patternProperties", "definitions"})
# Keywords whose value is a list of schemas.
SCHEMA_LISTS = frozenset({"allOf", "anyOf", "oneOf"})

Schema = dict[str, Any]


class ConversionError(Exception):
    """A source document this converter does not understand; the message says where."""


def convert(node: Any, *, where: str) -> Any:
    """One OpenAPI v3 schema (or CRD structural schema) as a strict draft-04 JSON schema."""
    if not isinstance(node, dict):
        raise ConversionError(f"{where}: expected a schema object, found {type(node).__name__}")
    result: Schema = {}
    for key, value in node.items():
        if key in DROPPED or (key.startswith("x-") and key not in (PRESERVE_UNKNOWN_FIELDS, INT_OR_STRING)):
            continue
        if key == "$ref":
            result[key] = reference(value, where=where)
        elif key in SCHEMA_MAPS:
            result[key] = {name: convert(schema, where=f"{where}.{name}") for name, schema in value.items()}
        elif key in SCHEMA_LISTS:
            result[key] = [convert(schema, where=f"{where}[{i}]") for i, schema in enumerate(value)]
        elif key in ("items", "not") or (key == "additionalProperties" and isinstance(value, dict)):
            result[key] = convert(value, where=f"{where}.{key}")
        elif key in (PRESERVE_UNKNOWN_FIELDS, INT_OR_STRING, "nullable"):
            continue  # applied below
        else:
            result[key] = value
    if node.get(INT_OR_STRING) and "anyOf" not in result and "oneOf" not in result:
        result.pop("type", None)
        result["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if node.get("nullable") and "type" in result:
        types = result["type"] if isinstance(result["type"], list) else [result["type"]]
        result["type"] = [*types, "null"]
    if "properties" in result and "additionalProperties" not in result and not node.get(PRESERVE_UNKNOWN_FIELDS):
        result["additionalProperties"] = False
    return result


def reference(target: Any, *, where: str) -> str:
    if not isinstance(target, str) or not target.startswith(COMPONENTS_PREFIX):
        raise ConversionError(f"{where}: a $ref outside the document's components: {target!r}")
    return DEFINITIONS_PREFIX + target.removeprefix(COMPONENTS_PREFIX)


def references(schema: Schema) -> Iterator[str]:
    """The component names a converted schema refers to, directly (a property may be named
    `$ref`: JSONSchemaProps has one, so the walk follows the keywords, not every key)."""
    for key, value in schema.items():
        if key == "$ref":
            yield value.removeprefix(DEFINITIONS_PREFIX)
        elif key in SCHEMA_MAPS:
            for child in value.values():
                yield from references(child)
        elif key in SCHEMA_LISTS:
            for child in value:
                yield from references(child)
        elif key in ("items", "not", "additionalProperties") and isinstance(value, dict):
            yield from references(value)


def standalone(name: str, converted: dict[str, Schema]) -> Schema:
    """The schema of component `name` with every definition it reaches, transitively."""
    needed: dict[str, Schema] = {}
    pending = list(references(converted[name]))
    while pending:
        wanted = pending.pop()
        if wanted in needed:
            continue
        if wanted not in converted:
            raise ConversionError(f"{name} refers to {wanted}, which no document defines")
        needed[wanted] = converted[wanted]
        pending.extend(references(converted[wanted]))
    document: Schema = {"$schema": DRAFT, **converted[name]}
    if needed:
        document["definitions"] = dict(sorted(needed.items()))
    return document


def kind_file(*, kind: str, group: str, version: str) -> str:
    """kubeconform's `{{ .ResourceKind }}{{ .KindSuffix }}.json` for a group, version and kind."""
    suffix = f"-{group.split('.', maxsplit=1)[0].lower()}" if group else ""
    return f"{kind.lower()}{suffix}-{version.lower()}.json"


def kubernetes_schemas(openapi_v3: Path) -> dict[str, Schema]:
    """File name -> schema, for every kind of every group version in the OpenAPI v3 documents."""
    components: dict[str, Any] = {}
    documents = sorted(openapi_v3.glob("*.json"))
    if not documents:
        raise ConversionError(f"no OpenAPI v3 document (*.json) in {openapi_v3}")
    for path in documents:
        schemas = json.loads(path.read_text(encoding="utf-8")).get("components", {}).get("schemas", {})
        for name, schema in schemas.items():
            if components.setdefault(name, schema) != schema:
                raise ConversionError(f"{name} is defined differently in {path.name} and an earlier document")
    converted = {name: convert(schema, where=name) for name, schema in components.items()}
    files: dict[str, Schema] = {}
    for name, schema in sorted(components.items()):
        for gvk in schema.get(GVK, []):
            file = kind_file(kind=gvk["kind"], group=gvk["group"], version=gvk["version"])
            files.setdefault(file, standalone(name, converted))
    return files


def crd_schemas(crd: Schema, *, source: str) -> dict[str, Schema]:
    """`<group>/<kind>_<version>.json` -> schema, for every served version of a CRD."""
    if crd.get("kind") != "CustomResourceDefinition":
        raise ConversionError(f"{source}: not a CustomResourceDefinition")
    spec = crd["spec"]
    files: dict[str, Schema] = {}
    for version in spec["versions"]:
        if not version.get("served", True):
            continue
        schema = version["schema"]["openAPIV3Schema"]
        where = f"{source}:{spec['names']['kind']}/{version['name']}"
        file = f"{spec['group']}/{spec['names']['kind'].lower()}_{version['name']}.json"
        files[file] = {"$schema": DRAFT, **convert(schema, where=where)}
    return files


def write_tree(files: dict[str, Schema], destination: Path) -> None:
    """Write the files into a new folder beside `destination`, then put it in its place."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{destination.name}.", dir=destination.parent))
    staging.chmod(0o755)  # mkdtemp makes it 0700: the cache is shared
    try:
        for relative, schema in files.items():
            path = staging / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(schema, separators=(",", ":"), sort_keys=True), encoding="utf-8")
        if destination.exists():
            shutil.rmtree(destination)
        os.replace(staging, destination)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--openapi-v3", type=Path, required=True, help="a Kubernetes release's api/openapi-spec/v3")
    parser.add_argument("--release", required=True, help="that release, e.g. 1.34.4")
    parser.add_argument("--crd", type=Path, action="append", default=[], help="a CRD as JSON (repeatable)")
    parser.add_argument("--out", type=Path, required=True, help="the schema folder kubeconform is pointed at")
    arguments = parser.parse_args(argv)
    try:
        kubernetes = kubernetes_schemas(arguments.openapi_v3)
        crds: dict[str, Schema] = {}
        for path in arguments.crd:
            crds.update(crd_schemas(json.loads(path.read_text(encoding="utf-8")), source=path.name))
    except (ConversionError, OSError, ValueError, KeyError) as error:
        print(f"kubernetes_schemas: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    write_tree(kubernetes, arguments.out / f"v{arguments.release.removeprefix('v')}-standalone-strict")
    write_tree(crds, arguments.out / "crds")
    print(f"kubernetes_schemas: {len(kubernetes)} Kubernetes kinds, {len(crds)} CRD versions in {arguments.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
