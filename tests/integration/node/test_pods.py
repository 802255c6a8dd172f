"""Story 1: pods really run on the real node; a ClusterIP Service routes from the host and from a pod."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from realnode import (
    RealNode,
    cluster_ip,
    get_json,
    http_from_pod,
    http_get,
    restricted_container,
    wait_pod_ready,
)
from testbed import kubectl, wait_until

pytestmark = pytest.mark.integration


def _pod(name: str, image: str, command: list[str], labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels or {}},
        "spec": {
            "restartPolicy": "Never",
            "automountServiceAccountToken": False,
            "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [
                {
                    "name": "main",
                    "image": image,
                    "command": command,
                    "securityContext": restricted_container(),
                }
            ],
        },
    }


def _apply(namespace: str, body: dict[str, Any]) -> None:
    kubectl("-n", namespace, "apply", "-f", "-", input=json.dumps(body))


def test_a_container_log_says_what_its_command_printed(namespace: str, real_node: RealNode) -> None:
    word = uuid.uuid4().hex
    _apply(namespace, _pod("echo", real_node.python_image, ["python3", "-c", f"print('hello {word}')"]))

    def finished() -> str | None:
        phase = get_json(namespace, "pod", "echo").get("status", {}).get("phase")
        return phase if phase in ("Succeeded", "Failed") else None

    assert wait_until(finished, timeout=180, interval=0.5, what="the echo pod to finish") == "Succeeded"
    pod = get_json(namespace, "pod", "echo")
    assert pod["spec"]["nodeName"] == real_node.name
    assert kubectl("-n", namespace, "logs", "echo").stdout.strip() == f"hello {word}"


def test_a_cluster_ip_service_routes_from_the_host_and_from_another_pod(
    namespace: str, real_node: RealNode
) -> None:
    word = uuid.uuid4().hex
    serve = [
        "python3",
        "-c",
        "import http.server as h, os\n"
        "class H(h.BaseHTTPRequestHandler):\n"
        "    def do_GET(self):\n"
        f"        body = ('{word} from ' + os.environ['HOSTNAME']).encode()\n"
        "        self.send_response(200); self.end_headers(); self.wfile.write(body)\n"
        "h.ThreadingHTTPServer(('0.0.0.0', 8080), H).serve_forever()\n",
    ]
    _apply(namespace, _pod("web", real_node.python_image, serve, labels={"app": "web"}))
    _apply(namespace, _pod("client", real_node.python_image, ["sleep", "3600"]))
    _apply(
        namespace,
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "web"},
            "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]},
        },
    )
    web = wait_pod_ready(namespace, "web")
    wait_pod_ready(namespace, "client")
    assert web["status"]["podIP"].startswith("10.245.0.")
    ip = cluster_ip(namespace, "web")

    def from_host() -> bytes | None:
        try:
            return http_get(f"http://{ip}/")[1]
        except OSError:
            return None  # kube-proxy writes the rules a moment after the endpoints appear

    assert wait_until(from_host, timeout=60, what="the Service from the host") == f"{word} from web".encode()
    assert http_from_pod(namespace, "client", f"http://{ip}/").strip() == f"{word} from web"
