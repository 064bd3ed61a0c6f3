"""A tiny stand-in for the Kubernetes API server: create / get / delete of `trainjobs.trainer.kubeflow.org`.

NOT a cluster: no controller runs. It validates a created TrainJob against the published CRD schema
(tests/schemas/, as the API server's structural validation does, CEL rules aside) and answers 422 when it
does not fit, 409 for a name that exists, 404 for one that does not, 401 without the bearer token. What
a job reports on each `get` comes from the test: either a scripted list of statuses per attempt, or a
`runner` callback that plays the kubelet (runs the containers' command locally) and returns the status.
Every request is recorded so tests can check what the client sent.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import jsonschema
import yaml

CRD_FILE = (
    Path(__file__).resolve().parents[2]
    / "schemas"
    / "kubeflow-trainer-v2.3.0"
    / "trainer.kubeflow.org_trainjobs.yaml"
)
PREFIX = "/apis/trainer.kubeflow.org/v1alpha1/namespaces/"


def trainjob_schema() -> dict:
    """The `openAPIV3Schema` of the vendored TrainJob CRD (v1alpha1)."""
    crd = yaml.safe_load(CRD_FILE.read_text())
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1alpha1"]
    return version["schema"]["openAPIV3Schema"]


def strict(schema):
    """The schema with unknown fields refused, as the API server does under `fieldValidation=Strict`
    (every object that lists its properties and does not preserve unknown fields)."""
    if isinstance(schema, list):
        return [strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    schema = {key: strict(value) for key, value in schema.items()}
    if (
        "properties" in schema
        and "additionalProperties" not in schema
        and not schema.get("x-kubernetes-preserve-unknown-fields")
    ):
        schema["additionalProperties"] = False
    return schema


def name_rules(schema: dict) -> tuple[re.Pattern, int]:
    """The CRD's two CEL rules on `metadata.name` (RFC 1035 pattern, maximum length), read from it."""
    rules = [rule["rule"] for rule in schema["x-kubernetes-validations"]]
    (pattern,) = [re.search(r"matches\('(.+)'\)", rule).group(1) for rule in rules if "matches(" in rule]
    (length,) = [int(re.search(r"<= (\d+)", rule).group(1)) for rule in rules if "size(" in rule]
    return re.compile(pattern), length


def admission_errors(job: dict, schema: dict, strict_fields: bool) -> list[str]:
    """What the API server would refuse in `job`: schema errors, unknown fields (strict), the name rules."""
    validator = jsonschema.Draft7Validator(strict(schema) if strict_fields else schema)
    errors = [f"{'.'.join(map(str, e.path)) or '(root)'}: {e.message}" for e in validator.iter_errors(job)]
    pattern, length = name_rules(schema)
    name = job.get("metadata", {}).get("name", "")
    if not pattern.fullmatch(name):
        errors.append(f"metadata.name must match RFC 1035 DNS label format (got {name!r})")
    if len(name) > length:
        errors.append(f"metadata.name must be no more than {length} characters")
    return sorted(errors)


def running(active: int = 1) -> dict:
    return {"jobsStatus": [{"name": "node", "ready": active, "succeeded": 0, "failed": 0, "active": active,
                            "suspended": 0}]}  # fmt: skip


def finished(kind: str, reason: str, message: str = "") -> dict:
    condition = {"type": kind, "status": "True", "reason": reason, "message": message,
                 "lastTransitionTime": "2026-01-01T00:00:00Z"}  # fmt: skip
    return {"conditions": [condition]}


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: dict | None


@dataclass
class FakeKubernetes:
    """State of the fake API server.

    `script[attempt]`: the statuses a job's successive `get`s report on its `attempt`-th creation (the
    last one repeats); `runner(job, attempt)`, when set, is called instead on the first `get` of an
    attempt and its returned status is reported from then on.
    """

    token: str | None = None
    installed: bool = True
    """False: the cluster has no Kubeflow Trainer (the trainjobs API answers 404)."""
    script: list[list[dict]] = field(default_factory=list)
    runner: Callable[[dict, int], dict] | None = None
    jobs: dict[tuple[str, str], dict] = field(default_factory=dict)
    attempts: dict[tuple[str, str], int] = field(default_factory=dict)
    gets: dict[tuple[str, str], int] = field(default_factory=dict)
    requests: list[Recorded] = field(default_factory=list)
    created: list[dict] = field(default_factory=list)
    schema: dict = field(default_factory=trainjob_schema)

    def status_of(self, key: tuple[str, str]) -> dict:
        attempt = self.attempts[key] - 1
        seen = self.gets[key] = self.gets.get(key, 0) + 1
        if self.runner is not None:
            if seen == 1:
                self.jobs[key]["status"] = self.runner(self.jobs[key], attempt)
            return self.jobs[key]["status"]
        statuses = self.script[min(attempt, len(self.script) - 1)]
        return statuses[min(seen - 1, len(statuses) - 1)]


def _status(code: int, reason: str, message: str) -> dict:
    return {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": reason, "message": message,
            "code": code}  # fmt: skip


def _handler(state: FakeKubernetes):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):  # keep the test output clean
            pass

        def _reply(self, code: int, payload: dict) -> None:
            body = json.dumps(payload).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _route(self) -> tuple[str, str | None] | None:
            """(namespace, name or None) of a trainjobs path; records the request and checks the token."""
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            headers = {key.lower(): value for key, value in self.headers.items()}
            state.requests.append(
                Recorded(self.command, self.path, headers, json.loads(raw) if raw else None)
            )
            if state.token is not None and headers.get("authorization") != f"Bearer {state.token}":
                self._reply(401, _status(401, "Unauthorized", "Unauthorized"))
                return None
            path = self.path.split("?", 1)[0]
            parts = path[len(PREFIX) :].split("/") if path.startswith(PREFIX) else []
            if len(parts) not in (2, 3) or parts[1] != "trainjobs":
                self._reply(
                    404, _status(404, "NotFound", f"the server could not find the requested resource {path}")
                )
                return None
            return parts[0], parts[2] if len(parts) == 3 else None

        def do_POST(self):  # noqa: N802 - http.server's naming
            route = self._route()
            if route is None:
                return
            namespace, _ = route
            if not state.installed:
                return self._reply(
                    404, _status(404, "NotFound", "the server could not find the requested resource")
                )
            job = state.requests[-1].body
            errors = admission_errors(job, state.schema, "fieldValidation=Strict" in self.path)
            if errors:
                return self._reply(
                    422, _status(422, "Invalid", f"TrainJob is invalid: {'; '.join(errors[:5])}")
                )
            key = (namespace, job["metadata"]["name"])
            if key in state.jobs:
                return self._reply(409, _status(409, "AlreadyExists", f'trainjobs "{key[1]}" already exists'))
            state.jobs[key] = {**job, "status": {}}
            state.attempts[key] = state.attempts.get(key, 0) + 1
            state.gets[key] = 0
            state.created.append(job)
            return self._reply(201, state.jobs[key])

        def do_GET(self):  # noqa: N802 - http.server's naming
            route = self._route()
            if route is None:
                return
            key = (route[0], route[1])
            if key not in state.jobs:
                return self._reply(404, _status(404, "NotFound", f'trainjobs "{key[1]}" not found'))
            return self._reply(200, {**state.jobs[key], "status": state.status_of(key)})

        def do_DELETE(self):  # noqa: N802 - http.server's naming
            route = self._route()
            if route is None:
                return
            key = (route[0], route[1])
            if key not in state.jobs:
                return self._reply(404, _status(404, "NotFound", f'trainjobs "{key[1]}" not found'))
            del state.jobs[key]
            return self._reply(200, {"kind": "Status", "apiVersion": "v1", "status": "Success"})

    return Handler


class FakeKubernetesServer:
    """Serve a `FakeKubernetes` on 127.0.0.1 (a free port) in a background thread, as a context manager."""

    def __init__(self, state: FakeKubernetes):
        self.state = state
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> FakeKubernetesServer:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
