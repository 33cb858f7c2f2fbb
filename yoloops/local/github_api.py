"""A fake GitHub REST API on 127.0.0.1 for the local stack: the release calls the write-back makes
(yoloops_core.github_api), answering as GitHub does, with the state a test inspects.

    fake = FakeGithubApi(token="ghp_...").start()
    fake.add_release("local/yoloops", "v1.0.0", body="notes")
    LocalStack(function_env={"GITHUB_API_URL": fake.url})
    fake.releases[...]["body"], fake.releases[...]["assets"], fake.calls
"""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit


class FakeGithubApi:
    def __init__(self, token: str = "ghp_localfaketoken0000000000000000000000"):
        self.token = token
        self.releases: dict[int, dict[str, Any]] = {}
        self.calls: list[tuple[str, str]] = []  # (method, path) of every authenticated call
        self.fail_uploads = 0  # tests: the next N uploads answer 502, as GitHub's upload host sometimes does
        self._next_id = 1000
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self.url = ""

    def add_release(self, repo: str, tag: str, body: str = "") -> dict[str, Any]:
        with self._lock:
            self._next_id += 1
            rid = self._next_id
            self.releases[rid] = {"id": rid, "repo": repo, "tag_name": tag, "body": body, "assets": [],
                                  "html_url": f"https://github.com/{repo}/releases/tag/{tag}"}
            return self.releases[rid]

    def release(self, repo: str, tag: str) -> dict[str, Any] | None:
        return next((r for r in self.releases.values() if r["repo"] == repo and r["tag_name"] == tag), None)

    def _public(self, rel: dict[str, Any]) -> dict[str, Any]:
        return {**{k: v for k, v in rel.items() if k not in ("repo", "assets")},
                "upload_url": f"{self.url}/uploads/repos/{rel['repo']}/releases/{rel['id']}/assets{{?name,label}}",
                "assets": [self._asset(a) for a in rel["assets"]]}

    @staticmethod
    def _asset(a: dict[str, Any]) -> dict[str, Any]:
        return {"id": a["id"], "name": a["name"], "size": len(a["data"]), "state": "uploaded"}

    def handle(self, method: str, raw_path: str, auth: str, body: bytes) -> tuple[int, Any]:
        if auth != f"Bearer {self.token}":
            return 401, {"message": "Bad credentials"}
        parts = urlsplit(raw_path)
        path, query = parts.path, parse_qs(parts.query)
        self.calls.append((method, path))
        m = re.fullmatch(r"(/uploads)?/repos/([^/]+/[^/]+)/releases/(?:tags/(.+)|(\d+))(/assets)?", path)
        if not m:
            return 404, {"message": "Not Found"}
        upload, repo, tag, rid, assets = m.groups()
        with self._lock:
            rel = self.release(repo, unquote(tag)) if tag else self.releases.get(int(rid))
            if rel is None or rel["repo"] != repo:
                return 404, {"message": "Not Found"}
            if assets and upload and method == "POST":
                return self._upload(rel, query.get("name", [""])[0], body)
            if assets and method == "GET":
                return 200, [self._asset(a) for a in rel["assets"]]
            if not assets and method == "GET":
                return 200, self._public(rel)
            if not assets and method == "PATCH":
                rel["body"] = json.loads(body or b"{}").get("body", rel["body"])
                return 200, self._public(rel)
        return 404, {"message": "Not Found"}

    def _upload(self, rel: dict[str, Any], name: str, data: bytes) -> tuple[int, Any]:
        if self.fail_uploads > 0:
            self.fail_uploads -= 1
            return 502, {"message": "Server Error"}
        if not name:
            return 422, {"message": "Validation Failed", "errors": [{"field": "name", "code": "missing"}]}
        if any(a["name"] == name for a in rel["assets"]):
            return 422, {"message": "Validation Failed", "errors": [{"resource": "ReleaseAsset", "code": "already_exists"}]}
        self._next_id += 1
        asset = {"id": self._next_id, "name": name, "data": data}
        rel["assets"].append(asset)
        return 201, self._asset(asset)

    def start(self) -> FakeGithubApi:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _serve(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                status, answer = fake.handle(method, self.path, self.headers.get("Authorization") or "", body)
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                self._serve("GET")

            def do_POST(self) -> None:
                self._serve("POST")

            def do_PATCH(self) -> None:
                self._serve("PATCH")

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True, name="fake-github").start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
