"""Render a kustomization offline: the subset deploy/kubernetes uses.

Not kustomize: resources (files and nested kustomizations), configMapGenerator
from files (with disableNameSuffixHash), strategic-merge patches by kind and
name (lists of named items merge by name, other lists are replaced),
`images` (newName/newTag), `namespace` and `labels`. A kustomization using
anything else fails here, so the tests notice before kustomize would differ.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

SUPPORTED = {
    "apiVersion",
    "kind",
    "namespace",
    "labels",
    "resources",
    "configMapGenerator",
    "generatorOptions",
    "images",
    "patches",
}
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition"}

Document = dict[str, Any]


def load_documents(path: Path) -> list[Document]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def merge(target: Any, patch: Any) -> Any:
    """Strategic merge as kustomize does it for the built-in kinds we patch."""
    if isinstance(target, dict) and isinstance(patch, dict):
        merged = dict(target)
        for key, value in patch.items():
            merged[key] = merge(target[key], value) if key in target else copy.deepcopy(value)
        return merged
    if isinstance(target, list) and isinstance(patch, list) and _named(target) and _named(patch):
        by_name = {item["name"]: item for item in target}
        merged_list = [merge(item, _find(patch, item["name"])) for item in target]
        merged_list += [copy.deepcopy(item) for item in patch if item["name"] not in by_name]
        return merged_list
    return copy.deepcopy(patch)


def _named(items: list[Any]) -> bool:
    return bool(items) and all(isinstance(i, dict) and "name" in i for i in items)


def _find(items: list[Document], name: str) -> Document:
    return next((i for i in items if i["name"] == name), {})


def _pod_spec(document: Document) -> Document | None:
    template = document.get("spec", {}).get("template", {})
    spec = template.get("spec")
    return spec if isinstance(spec, dict) else None


def render(directory: Path) -> list[Document]:
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    unknown = set(kustomization) - SUPPORTED
    if unknown:
        raise ValueError(f"{directory}: kustomize_lite does not support {sorted(unknown)}")
    documents: list[Document] = []
    for resource in kustomization.get("resources", []):
        path = (directory / resource).resolve()
        documents += render(path) if path.is_dir() else load_documents(path)
    options = kustomization.get("generatorOptions", {})
    for generator in kustomization.get("configMapGenerator", []):
        if not options.get("disableNameSuffixHash"):
            raise ValueError(f"{directory}: name suffix hashes are not rendered")
        data = {Path(f).name: (directory / f).read_text() for f in generator["files"]}
        documents.append(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": generator["name"]},
                "data": data,
            }
        )
    for entry in kustomization.get("patches", []):
        (patch,) = load_documents(directory / entry["path"])
        matches = [
            i
            for i, d in enumerate(documents)
            if d["kind"] == patch["kind"] and d["metadata"]["name"] == patch["metadata"]["name"]
        ]
        if len(matches) != 1:
            raise ValueError(f"{directory}: patch {entry['path']} matches {len(matches)} documents")
        documents[matches[0]] = merge(documents[matches[0]], patch)
    for image in kustomization.get("images", []):
        for document in documents:
            spec = _pod_spec(document)
            for container in (spec or {}).get("containers", []):
                name, _, tag = container["image"].partition(":")
                if name == image["name"]:
                    container["image"] = (
                        f"{image.get('newName', name)}:{image.get('newTag', tag or 'latest')}"
                    )
    namespace = kustomization.get("namespace")
    for document in documents:
        metadata = document.setdefault("metadata", {})
        if namespace and document["kind"] not in CLUSTER_SCOPED:
            metadata["namespace"] = namespace
        for group in kustomization.get("labels", []):
            metadata.setdefault("labels", {}).update(group["pairs"])
    return documents
