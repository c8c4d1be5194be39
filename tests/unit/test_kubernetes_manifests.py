"""deploy/kubernetes: every overlay renders, and every rendered document
validates offline — built-in kinds against Kubernetes' own OpenAPI schemas
(kubernetes-validate, strict: unknown fields fail), the operators' kinds
(cert-manager, Prometheus operator, CloudNativePG) against the fields we use."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from tests.kustomize_lite import Document, render

ROOT = Path(__file__).resolve().parents[2]
KUBERNETES = ROOT / "deploy" / "kubernetes"
OVERLAYS = sorted(p.parent.name for p in (KUBERNETES / "overlays").glob("*/kustomization.yaml"))
KUBERNETES_VERSION = "1.30.0"

_METADATA = {
    "type": "object",
    "required": ["name", "namespace"],
    "properties": {"name": {"type": "string"}, "namespace": {"type": "string"}},
}
_ISSUER_REF = {
    "type": "object",
    "required": ["name", "kind"],
    "properties": {"kind": {"enum": ["Issuer", "ClusterIssuer"]}},
}
# The operators' kinds, as far as these manifests use them (from their CRDs).
CUSTOM_SCHEMAS: dict[tuple[str, str], dict[str, Any]] = {
    ("cert-manager.io/v1", "Issuer"): {
        "type": "object",
        "required": ["metadata", "spec"],
        "properties": {
            "metadata": _METADATA,
            "spec": {
                "type": "object",
                "required": ["ca"],
                "additionalProperties": False,
                "properties": {
                    "ca": {
                        "type": "object",
                        "required": ["secretName"],
                        "additionalProperties": False,
                        "properties": {"secretName": {"type": "string"}},
                    }
                },
            },
        },
    },
    ("cert-manager.io/v1", "Certificate"): {
        "type": "object",
        "required": ["metadata", "spec"],
        "properties": {
            "metadata": _METADATA,
            "spec": {
                "type": "object",
                "required": ["secretName", "issuerRef"],
                "additionalProperties": False,
                "properties": {
                    "secretName": {"type": "string"},
                    "duration": {"type": "string", "pattern": "^[0-9]+h$"},
                    "renewBefore": {"type": "string", "pattern": "^[0-9]+h$"},
                    "commonName": {"type": "string"},
                    "dnsNames": {"type": "array", "items": {"type": "string"}},
                    "ipAddresses": {"type": "array", "items": {"type": "string"}},
                    "uris": {"type": "array", "items": {"type": "string", "pattern": "^spiffe://"}},
                    "usages": {
                        "type": "array",
                        "items": {"enum": ["server auth", "client auth", "digital signature"]},
                    },
                    "privateKey": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "algorithm": {"enum": ["RSA", "ECDSA", "Ed25519"]},
                            "size": {"type": "integer"},
                        },
                    },
                    "issuerRef": _ISSUER_REF,
                },
            },
        },
    },
    ("monitoring.coreos.com/v1", "ServiceMonitor"): {
        "type": "object",
        "required": ["metadata", "spec"],
        "properties": {
            "metadata": _METADATA,
            "spec": {
                "type": "object",
                "required": ["selector", "endpoints"],
                "additionalProperties": False,
                "properties": {
                    "selector": {"type": "object", "required": ["matchLabels"]},
                    "endpoints": {
                        "type": "array",
                        "minItems": 1,
                        "items": {
                            "type": "object",
                            "required": ["port"],
                            "additionalProperties": False,
                            "properties": {
                                "port": {"type": "string"},
                                "interval": {"type": "string", "pattern": "^[0-9]+s$"},
                            },
                        },
                    },
                },
            },
        },
    },
    ("postgresql.cnpg.io/v1", "Cluster"): {
        "type": "object",
        "required": ["metadata", "spec"],
        "properties": {
            "metadata": _METADATA,
            "spec": {
                "type": "object",
                "required": ["instances", "storage"],
                "additionalProperties": False,
                "properties": {
                    "instances": {"type": "integer", "minimum": 1},
                    "storage": {"type": "object", "required": ["size"]},
                    "bootstrap": {"type": "object"},
                    "postgresql": {"type": "object"},
                    "monitoring": {"type": "object"},
                },
            },
        },
    },
}
# Made outside these manifests: by the operator (the database URL; the CA)
# or by cert-manager and CloudNativePG from the documents themselves.
EXTERNAL_SECRETS = {"gpupool-database", "gpupool-ca"}


def validate(document: Document) -> None:
    key = (document["apiVersion"], document["kind"])
    if key in CUSTOM_SCHEMAS:
        jsonschema.validate(document, CUSTOM_SCHEMAS[key])
        return
    kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)


def find(documents: list[Document], kind: str, name: str) -> Document:
    (found,) = [d for d in documents if d["kind"] == kind and d["metadata"]["name"] == name]
    return found


def pod_specs(documents: list[Document]) -> list[Document]:
    return [d["spec"]["template"]["spec"] for d in documents if "template" in d.get("spec", {})]


@pytest.mark.parametrize("overlay", ["base", *OVERLAYS])
def test_overlay_renders_and_every_document_validates(overlay: str) -> None:
    directory = KUBERNETES / "base" if overlay == "base" else KUBERNETES / "overlays" / overlay
    documents = render(directory)
    assert documents
    for document in documents:
        validate(document)
    names = {(d["kind"], d["metadata"]["name"]) for d in documents}
    assert len(names) == len(documents), "a kind and name appear twice"
    # Everything a pod refers to is in the render, or documented as made elsewhere.
    secrets = {d["spec"]["secretName"] for d in documents if d["kind"] == "Certificate"}
    secrets |= {f"{d['metadata']['name']}-app" for d in documents if d["kind"] == "Cluster"}
    secrets |= EXTERNAL_SECRETS
    for spec in pod_specs(documents):
        assert ("ServiceAccount", spec["serviceAccountName"]) in names
        for volume in spec.get("volumes", []):
            if "configMap" in volume:
                assert ("ConfigMap", volume["configMap"]["name"]) in names
            if "secret" in volume:
                assert volume["secret"]["secretName"] in secrets
        for container in spec["containers"]:
            assert container["image"].startswith("ghcr.io/example/gpupool:")
            for env in container.get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ref["name"] in secrets, ref


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="no kubectl on this machine")
@pytest.mark.parametrize("overlay", ["base", *OVERLAYS])
def test_kustomize_lite_renders_what_kubectl_kustomize_does(overlay: str) -> None:
    """Where kubectl is installed (it runs kustomize offline), the real thing
    and tests/kustomize_lite.py agree document for document."""
    directory = KUBERNETES / "base" if overlay == "base" else KUBERNETES / "overlays" / overlay
    done = subprocess.run(
        ["kubectl", "kustomize", str(directory)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr

    def by_name(documents: list[Document]) -> dict[str, str]:
        return {
            f"{d['kind']}/{d['metadata']['name']}": json.dumps(d, sort_keys=True) for d in documents
        }

    real = by_name([d for d in yaml.safe_load_all(done.stdout) if d])
    assert by_name(render(directory)) == real


def test_scheduler_is_highly_available_and_probed_over_grpc_health() -> None:
    documents = render(KUBERNETES / "base")
    deployment = find(documents, "Deployment", "gpupool-scheduler")
    assert deployment["spec"]["replicas"] >= 2
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["exec"]["command"][:2] == ["gpupool", "probe"]
    assert "--metrics-listen=0.0.0.0:9464" in container["args"]
    budget = find(documents, "PodDisruptionBudget", "gpupool-scheduler")
    assert budget["spec"]["minAvailable"] == 1
    headless = find(documents, "Service", "gpupool-scheduler-agents")
    assert headless["spec"]["clusterIP"] == "None"
    assert find(documents, "ServiceMonitor", "gpupool-scheduler")
    assert find(documents, "ServiceMonitor", "gpupool-agent")


def test_agent_runs_on_gpu_nodes_unprivileged_with_its_node_name() -> None:
    documents = render(KUBERNETES / "base")
    spec = find(documents, "DaemonSet", "gpupool-agent")["spec"]["template"]["spec"]
    assert spec["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert spec["runtimeClassName"] == "nvidia"
    (container,) = spec["containers"]
    env = {e["name"]: e for e in container["env"]}
    assert env["NODE_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"
    assert "--node-name=$(NODE_NAME)" in container["args"]
    assert container["securityContext"]["privileged"] is False
    assert "resources" in container and "nvidia.com/gpu" not in container["resources"]["requests"]


def test_mig_overlay_privileges_only_the_mig_nodes_agent() -> None:
    documents = render(KUBERNETES / "overlays" / "mig")
    plain = find(documents, "DaemonSet", "gpupool-agent")
    mig = find(documents, "DaemonSet", "gpupool-agent-mig")
    plain_spec, mig_spec = plain["spec"]["template"]["spec"], mig["spec"]["template"]["spec"]
    assert plain_spec["containers"][0]["securityContext"]["privileged"] is False
    assert mig_spec["containers"][0]["securityContext"]["privileged"] is True
    assert mig_spec["nodeSelector"]["nvidia.com/mig.capable"] == "true"
    affinity = plain_spec["affinity"]["nodeAffinity"]
    required = affinity["requiredDuringSchedulingIgnoredDuringExecution"]
    (term,) = required["nodeSelectorTerms"]
    assert term["matchExpressions"][0]["operator"] == "NotIn"
    # Nothing else differs: the MIG agent is the base agent with privileges.
    base_container = dict(plain_spec["containers"][0])
    mig_container = dict(mig_spec["containers"][0])
    for container in (base_container, mig_container):
        container.pop("securityContext")
        container["env"] = [e for e in container["env"] if "MIG" not in e["name"]]
    assert base_container == mig_container
    assert set(plain_spec) - {"affinity"} == set(mig_spec)


def test_policy_config_map_holds_the_deploy_files() -> None:
    documents = render(KUBERNETES / "base")
    data = find(documents, "ConfigMap", "gpupool-policy")["data"]
    for name, text in data.items():
        assert text == (ROOT / "deploy" / name).read_text(), f"base/policy/{name} is stale"
