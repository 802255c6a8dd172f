"""`make demo`: the main job on the local test bed (for now: the cluster, and how to use it)."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def main() -> None:
    kubeconfig = REPO / ".local" / "kubeconfig"
    print(
        f"""
The local test bed is up:
  - a real kube-apiserver (v1.34), controller-manager and scheduler, on https://127.0.0.1:6443
  - two KWOK nodes (pods are simulated: Deployments become Available, Jobs complete)
  - Azurite (Azure Blob Storage emulator) on http://127.0.0.1:10000/devstoreaccount1

Try:
  export KUBECONFIG={kubeconfig}
  kubectl get nodes
  kubectl create deployment hello --image=example.com/hello:1 --replicas=3
  kubectl rollout status deployment/hello

Stop it with: make cluster-down
"""
    )


if __name__ == "__main__":
    main()
