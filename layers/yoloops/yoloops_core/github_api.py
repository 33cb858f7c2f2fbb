"""A small GitHub REST API adapter (urllib; the layer has no HTTP library) for a release's write-back:
read a release by tag, edit its body, list and upload its assets.

Errors raise GithubApiError naming the call and GitHub's message, so the caller's retry and DLQ see them.
"""

from __future__ import annotations

import contextlib
import json
import re
import urllib.error
import urllib.parse
import urllib.request
from typing import IO, Any

API_VERSION = "2022-11-28"
# A token is "set" when the secret holds one of GitHub's token formats (fine-grained, classic, app, OAuth)
# or a legacy 40-hex classic token; the deployed placeholder is neither.
_TOKEN = re.compile(r"(github_pat_|ghp_|ghs_|gho_|ghu_)[A-Za-z0-9_]{20,255}|[0-9a-f]{40}")


class GithubApiError(RuntimeError):
    def __init__(self, what: str, status: int | None, message: str):
        super().__init__(f"GitHub API {what}: {status or 'no answer'} {message}".strip())
        self.status = status


def usable_token(value: str | None) -> bool:
    return bool(value) and bool(_TOKEN.fullmatch(value.strip()))


def repo_and_tag(release_url: str) -> tuple[str, str]:
    """`https://github.com/<owner>/<repo>/releases/tag/<tag>` (a release's html_url) -> (owner/repo, tag)."""
    m = re.fullmatch(r"https?://[^/]+/([^/]+)/([^/]+)/releases/tag/(.+)", release_url or "")
    if not m:
        raise ValueError(f"{release_url!r} is not a GitHub release URL (.../<owner>/<repo>/releases/tag/<tag>)")
    return f"{m.group(1)}/{m.group(2)}", urllib.parse.unquote(m.group(3))


class GithubApi:
    def __init__(self, token: str, base_url: str = "https://api.github.com", timeout: float = 30.0):
        self.token = token.strip()
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout

    def _call(self, what: str, method: str, url: str, body: bytes | IO[bytes] | None = None,
              content_type: str = "application/json", length: int | None = None) -> Any:
        headers = {"Authorization": f"Bearer {self.token}", "Accept": "application/vnd.github+json",
                   "X-GitHub-Api-Version": API_VERSION, "User-Agent": "yoloops"}
        if body is not None:
            headers["Content-Type"] = content_type
            headers["Content-Length"] = str(length if length is not None else len(body))  # type: ignore[arg-type]
        req = urllib.request.Request(url, data=body, method=method, headers=headers)  # type: ignore[arg-type]
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            text = exc.read().decode(errors="replace")
            with contextlib.suppress(ValueError, AttributeError):
                text = json.loads(text).get("message") or text
            raise GithubApiError(what, exc.code, str(text)[:300]) from None
        except (urllib.error.URLError, TimeoutError) as exc:
            raise GithubApiError(what, None, str(getattr(exc, "reason", exc))) from None
        return json.loads(raw) if raw.strip() else None

    def _repo_url(self, repo: str, path: str) -> str:
        return f"{self.base_url}/repos/{urllib.parse.quote(repo, safe='/')}{path}"

    def release_by_tag(self, repo: str, tag: str) -> dict[str, Any]:
        return self._call(f"GET release {repo}@{tag}", "GET",
                          self._repo_url(repo, f"/releases/tags/{urllib.parse.quote(tag, safe='')}"))

    def update_body(self, repo: str, release_id: int, body: str) -> dict[str, Any]:
        return self._call(f"PATCH release {repo}#{release_id}", "PATCH",
                          self._repo_url(repo, f"/releases/{release_id}"), json.dumps({"body": body}).encode())

    def assets(self, repo: str, release_id: int) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for page in range(1, 51):
            batch = self._call(f"GET assets of {repo}#{release_id}", "GET",
                               self._repo_url(repo, f"/releases/{release_id}/assets?per_page=100&page={page}"))
            out += batch or []
            if not batch or len(batch) < 100:
                return out
        return out

    def upload_asset(self, release: dict[str, Any], name: str, data: IO[bytes] | bytes, size: int) -> dict[str, Any]:
        """POST to the release's upload_url (uploads.github.com on GitHub; a template `...{?name,label}`)."""
        base = str(release["upload_url"]).split("{", 1)[0]
        url = f"{base}?{urllib.parse.urlencode({'name': name})}"
        return self._call(f"upload asset {name}", "POST", url, data, "application/octet-stream", size)
