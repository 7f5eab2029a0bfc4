"""The part of `kustomize build` that deploy/k8s and deploy/k8s-fleet use, for the deploy tests.

No kustomize binary where CI runs, so the tests build the fleet overlay here. Emulated:
`resources` (manifest files, and directories holding a kustomization.yaml), `patches` given by
`path` that are strategic-merge patches naming their target by kind and metadata.name, and
`images` (newName, newTag, digest: what `kustomize edit set image NAME=REPO@sha256:...`
writes, for pinning an image by its digest). Any other kustomization field is an error, so the manifests cannot
start using a feature this does not emulate without a test noticing; where a kustomize binary
is on PATH, test_k8s_fleet.py compares its output with this one.

Strategic merge as Kubernetes defines it for the fields the patches touch: maps merge key by
key; a list of maps merges item by item on its merge key (MERGE_KEYS), an item with
`$patch: delete` removes its match, an item without a match is added; any other value is
replaced.
"""

from __future__ import annotations

import copy
from pathlib import Path

import yaml

SUPPORTED = {"apiVersion", "kind", "resources", "patches", "images"}
# Kubernetes' patchMergeKey of each list the patches touch. `ports` is a container's
# (containerPort) or a Service's (port); told apart by the items.
MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "env": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
}


def load_documents(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def build(root: Path) -> list[dict]:
    """The objects `kustomize build root` would output (in no particular order)."""
    kustomization = yaml.safe_load((root / "kustomization.yaml").read_text())
    unsupported = set(kustomization) - SUPPORTED
    assert not unsupported, f"{root}: kustomization fields not emulated: {unsupported}"
    objects: list[dict] = []
    for resource in kustomization.get("resources", []):
        path = (root / resource).resolve()
        objects.extend(build(path) if path.is_dir() else load_documents(path))
    for patch in kustomization.get("patches", []):
        assert set(patch) == {"path"}, f"{root}: only `patches: - path:` is emulated: {patch}"
        for document in load_documents(root / patch["path"]):
            apply_patch(objects, document)
    for image in kustomization.get("images", []):
        set_image(objects, image)
    return objects


def key(obj: dict) -> tuple[str, str]:
    return obj["kind"], obj["metadata"]["name"]


def apply_patch(objects: list[dict], patch: dict) -> None:
    targets = [i for i, obj in enumerate(objects) if key(obj) == key(patch)]
    assert len(targets) == 1, f"patch target {key(patch)}: {len(targets)} among the resources"
    objects[targets[0]] = merge(objects[targets[0]], patch)


def merge(target: object, patch: object, field: str = "") -> object:
    """`patch` merged into `target` (neither changed); `field` names the value merged."""
    if isinstance(target, dict) and isinstance(patch, dict):
        merged = dict(target)
        for name, value in patch.items():
            merged[name] = (
                merge(target[name], value, name) if name in target else copy.deepcopy(value)
            )
        return merged
    if isinstance(target, list) and isinstance(patch, list) and field in (*MERGE_KEYS, "ports"):
        merge_key = MERGE_KEYS.get(field)
        if merge_key is None:  # ports: a container's or a Service's
            merge_key = "containerPort" if any("containerPort" in p for p in target) else "port"
        return _merge_list(target, patch, merge_key)
    return copy.deepcopy(patch)


def _merge_list(target: list[dict], patch: list[dict], merge_key: str) -> list[dict]:
    merged = [dict(item) for item in target]
    for item in patch:
        matches = [i for i, old in enumerate(merged) if old[merge_key] == item[merge_key]]
        if item.get("$patch") == "delete":
            assert matches, f"$patch: delete of {merge_key}={item[merge_key]}: no such item"
            del merged[matches[0]]
        elif matches:
            merged[matches[0]] = merge(merged[matches[0]], item)
        else:
            merged.append(copy.deepcopy(item))
    return merged


def pod_containers(obj: dict) -> list[dict]:
    template = obj.get("spec", {}).get("template", {}).get("spec", {})
    return template.get("containers", []) + template.get("initContainers", [])


def split_image(reference: str) -> tuple[str, str]:
    """(name, tag or "@digest") of an image reference; a registry's port is part of the name."""
    if "@" in reference:
        name, _, digest = reference.partition("@")
        return name, "@" + digest
    name, colon, tag = reference.rpartition(":")
    return (name, tag) if colon and "/" not in tag else (reference, "")


def set_image(objects: list[dict], image: dict) -> None:
    for obj in objects:
        for container in pod_containers(obj):
            name, tag = split_image(container["image"])
            if name == image["name"]:
                name = image.get("newName", name)
                if "digest" in image:  # a digest replaces the tag
                    container["image"] = f"{name}@{image['digest']}"
                    continue
                tag = image.get("newTag", tag)
                container["image"] = name + (
                    tag if tag.startswith("@") else f":{tag}" if tag else ""
                )
