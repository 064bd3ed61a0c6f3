"""A tiny stand-in for the KFP API server: the v2beta1 REST calls `kfp.Client` makes to submit a run.

NOT a real KFP backend: it stores uploads and runs in memory, runs nothing, and answers `get run` with
the final state the test chose. It records every request so tests can check what the client sent
(paths, query parameters, the Authorization header, the uploaded pipeline, the run's parameters).
"""

from __future__ import annotations

import email.parser
import email.policy
import itertools
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

API = "/apis/v2beta1"
NOW = "2026-01-01T00:00:00Z"


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # names lower-cased
    body: bytes


@dataclass
class FakeKFP:
    """State of the fake server; `final_state` is what every run reports when fetched."""

    token: str | None = None
    final_state: str = "SUCCEEDED"
    requests: list[Recorded] = field(default_factory=list)
    pipelines: dict[str, dict] = field(default_factory=dict)
    versions: dict[str, dict] = field(default_factory=dict)
    experiments: dict[str, dict] = field(default_factory=dict)
    runs: dict[str, dict] = field(default_factory=dict)
    uploads: list[bytes] = field(default_factory=list)
    _ids: itertools.count = field(default_factory=lambda: itertools.count(1))

    def new_id(self, kind: str) -> str:
        return f"{kind}-{next(self._ids)}"

    def calls(self, method: str, path_suffix: str) -> list[Recorded]:
        return [r for r in self.requests if r.method == method and r.path.endswith(path_suffix)]


def _uploaded_file(content_type: str, body: bytes) -> bytes:
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + body
    )
    for part in message.iter_parts():
        if part.get_param("name", header="content-disposition") == "uploadfile":
            return part.get_payload(decode=True)
    raise ValueError("multipart body without an `uploadfile` part")


def _display_name_filter(query: dict[str, list[str]]) -> str | None:
    if "filter" not in query:
        return None
    predicates = json.loads(query["filter"][0])["predicates"]
    return next(p["string_value"] if "string_value" in p else p["stringValue"] for p in predicates)


def _handler(state: FakeKFP):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):  # keep the test output clean
            pass

        def _reply(self, status: int, payload: dict) -> None:
            body = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _record(self) -> Recorded:
            url = urlparse(self.path)
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            headers = {key.lower(): value for key, value in self.headers.items()}
            recorded = Recorded(self.command, url.path, parse_qs(url.query), headers, body)
            state.requests.append(recorded)
            return recorded

        def _authorised(self, request: Recorded) -> bool:
            if state.token is None:
                return True
            if request.headers.get("authorization") == f"Bearer {state.token}":
                return True
            self._reply(401, {"error": "unauthenticated", "code": 16, "message": "bad or missing token"})
            return False

        def do_GET(self):  # noqa: N802 - http.server's naming
            request = self._record()
            if not self._authorised(request):
                return
            if request.path == f"{API}/healthz":
                return self._reply(200, {"multi_user": False})
            if request.path == f"{API}/pipelines":
                name = _display_name_filter(request.query)
                found = [p for p in state.pipelines.values() if name in (None, p["display_name"])]
                return self._reply(200, {"pipelines": found, "total_size": len(found)} if found else {})
            if request.path == f"{API}/experiments":
                name = _display_name_filter(request.query)
                found = [e for e in state.experiments.values() if name in (None, e["display_name"])]
                return self._reply(200, {"experiments": found, "total_size": len(found)} if found else {})
            if request.path.startswith(f"{API}/runs/"):
                run = state.runs.get(request.path.rsplit("/", 1)[-1])
                if run is None:
                    return self._reply(404, {"error": "run not found", "code": 5})
                return self._reply(200, {**run, "state": state.final_state, "finished_at": NOW})
            return self._reply(404, {"error": f"no route {request.path}", "code": 5})

        def do_POST(self):  # noqa: N802 - http.server's naming
            request = self._record()
            if not self._authorised(request):
                return
            if request.path == f"{API}/pipelines/upload":
                state.uploads.append(_uploaded_file(request.headers["content-type"], request.body))
                name = request.query["name"][0]
                if any(p["display_name"] == name for p in state.pipelines.values()):
                    return self._reply(409, {"error": f"pipeline {name} exists", "code": 6})
                pipeline = {"pipeline_id": state.new_id("pipeline"), "display_name": name, "created_at": NOW}
                state.pipelines[pipeline["pipeline_id"]] = pipeline
                return self._reply(200, pipeline)
            if request.path == f"{API}/pipelines/upload_version":
                state.uploads.append(_uploaded_file(request.headers["content-type"], request.body))
                pipeline_id = request.query["pipelineid"][0]
                if pipeline_id not in state.pipelines:
                    return self._reply(404, {"error": f"pipeline {pipeline_id} not found", "code": 5})
                version = {
                    "pipeline_id": pipeline_id,
                    "pipeline_version_id": state.new_id("version"),
                    "display_name": request.query["name"][0],
                    "created_at": NOW,
                }
                state.versions[version["pipeline_version_id"]] = version
                return self._reply(200, version)
            if request.path == f"{API}/experiments":
                experiment = {
                    **json.loads(request.body),
                    "experiment_id": state.new_id("experiment"),
                    "created_at": NOW,
                }
                state.experiments[experiment["experiment_id"]] = experiment
                return self._reply(200, experiment)
            if request.path == f"{API}/runs":
                run = {
                    **json.loads(request.body),
                    "run_id": state.new_id("run"),
                    "state": "PENDING",
                    "created_at": NOW,
                }
                state.runs[run["run_id"]] = run
                return self._reply(200, run)
            return self._reply(404, {"error": f"no route {request.path}", "code": 5})

    return Handler


class FakeKFPServer:
    """Serve a `FakeKFP` on 127.0.0.1 (a free port) in a background thread, as a context manager."""

    def __init__(self, state: FakeKFP):
        self.state = state
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> FakeKFPServer:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
