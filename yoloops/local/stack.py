"""The local stack: moto in server mode + the real template + in-process Lambdas + a training backend.

    stack = LocalStack(workdir=Path(".local"), port=0, training=ProcessTrainingBackend(".local"))
    stack.start()          # moto on 127.0.0.1, template deployed, <workdir>/stack.json written
    stack.outputs["ArtifactsBucketName"]; stack.slack_messages; stack.interrupt("ds-x-v1-a1")
    stack.stop()
"""

from __future__ import annotations

import base64
import json
import logging
import os
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from yoloops.local import moto_patches
from yoloops.local.deploy import Deployer, Deployment
from yoloops.local.lambdas import LambdaRuntime
from yoloops.local.training import ScriptedTrainingBackend, TrainingBackend
from yoloops.local.tuning import LocalTuner

log = logging.getLogger("yoloops.local")

REPO_ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = REPO_ROOT / "template.yaml"
REGION = "us-east-1"
# Template parameters the local stack turns down unless the caller sets them (Wait states really sleep).
LOCAL_PARAMETER_DEFAULTS = {"ImagePollSeconds": "1", "ImageMaxPolls": "3", "RetryBackoffSeconds": "1",
                            "UploadQuietSeconds": "3", "UploadBatchWindowSeconds": "1"}
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SESSION_TOKEN": "testing"}


class _QuietHandler(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)

    def _reply(self, status: int, body: bytes | str, headers: dict[str, str] | None = None) -> None:
        data = body.encode() if isinstance(body, str) else body
        self.send_response(status)
        for k, v in (headers or {"Content-Type": "application/json"}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""


class LocalStack:
    def __init__(self, workdir: Path | str = Path(".local"), port: int = 0,
                 training: TrainingBackend | None = None, parameters: dict[str, Any] | None = None,
                 template: Path | str = TEMPLATE, region: str = REGION,
                 github_webhook_secret: str = "local-github-webhook-secret",
                 function_env: dict[str, str] | None = None, stack_name: str = "yoloops-local"):
        self.workdir = Path(workdir)
        self.port = port
        self.training = training if training is not None else ScriptedTrainingBackend()
        self.parameters = dict(parameters or {})
        self.template = Path(template)
        self.region = region
        self.github_webhook_secret = github_webhook_secret
        # Extra variables for every function, like `sam local invoke --env-vars` (local settings only).
        self.function_env = dict(function_env or {})
        self.lambdas = LambdaRuntime()
        # Hyperparameter tuning jobs (sweeps): real training jobs of `training`, a few at a time.
        self.tuner = LocalTuner(self.training, region)
        self.slack_messages: list[dict[str, Any]] = []
        self.slack_reply_status = 200  # tests: make the Slack receiver fail (e.g. 400, 500)
        # The Web API receiver (chat.postMessage/update/delete at <control_url>/slack-api/) checks this token;
        # the bot-token secret holds it, so threads are on when the SlackChannel parameter is set.
        self.slack_bot_token = "xoxb-local-bot-token"
        # The Slack app's signing secret: what `yoloops.local.slack_sign` signs button clicks with.
        self.slack_signing_secret = "local-slack-signing-secret"
        self._slack_ts = 0
        self.stack_name = stack_name
        self.deployment: Deployment | None = None
        # More stacks of the template in the same emulated account (add_stack): dev and prod side by side.
        self.other_stacks: dict[str, Deployment] = {}
        self.sqs_pollers: list[Any] = []  # event_sources.SqsPoller per SQS event source mapping
        self._server: Any = None
        self._http: ThreadingHTTPServer | None = None
        self._saved_env: dict[str, str | None] = {}
        self._session: Any = None
        self._deploy_clients: dict[str, Any] = {}
        self._clients: dict[str, Any] = {}
        self.endpoint_url = ""
        self.control_url = ""
        self.slack_url = ""

    # ------------------------------------------------------------ lifecycle
    def start(self) -> LocalStack:
        from moto.server import ThreadedMotoServer

        if moto_patches.ACTIVE.lambdas is not None:
            # moto's backends are process-global: two stacks in one process would share one account.
            raise RuntimeError("another local stack is already running in this process")
        moto_patches.install()
        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per AWS call otherwise
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.port = port
        self.endpoint_url = f"http://{host}:{port}"
        import requests

        # A fresh account, even if an earlier stack in this process left resources behind.
        requests.post(f"{self.endpoint_url}/moto-api/reset", timeout=10).raise_for_status()
        self._start_http()
        env = {"MOTO_PORT": str(port), "AWS_ENDPOINT_URL": self.endpoint_url, "AWS_DEFAULT_REGION": self.region,
               "AWS_REGION": self.region, **CREDENTIALS}
        self._saved_env = {k: os.environ.get(k) for k in env}
        os.environ.update(env)  # moto's Step Functions worker calls back into the server on MOTO_PORT
        self.lambdas.base_env = dict(env)
        self.lambdas.dead_letter = self._dead_letter
        moto_patches.ACTIVE.lambdas = self.lambdas
        moto_patches.ACTIVE.training = self.training
        moto_patches.ACTIVE.tuning = self.tuner
        moto_patches.ACTIVE.execution_ended = self._emit_execution_event
        moto_patches.ACTIVE.image_pushed = self._emit_image_pushed
        self.training.attach(self.client("s3"), self._emit_training_event, self.region)
        if hasattr(self.training, "logs_client"):
            self.training.logs_client = self.client("logs")
        try:
            self.deploy()
        except BaseException:
            self.stop()  # a half-started stack must not keep the port, the patches' target or stack.json
            raise
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "stack.json").write_text(json.dumps(self.describe(), indent=2))
        return self

    def deploy(self) -> Deployment:

        self.lambdas.cold_start()  # clients, secrets and wiring would point at the previous deployment otherwise
        self._stop_pollers()
        self.other_stacks.clear()
        self.deployment = self._deploy_stack(self.stack_name, self.parameters)
        return self.deployment

    def add_stack(self, stack_name: str, parameters: dict[str, Any] | None = None) -> Deployment:
        """Deploy the template once more, as another stack in the same emulated account and region (dev and
        prod side by side, as samconfig.toml deploys them): its own resources, functions and pollers; one
        EventBridge bus, one SageMaker (training backend) and one Slack receiver shared, as on AWS."""
        if stack_name == self.stack_name or stack_name in self.other_stacks:
            raise ValueError(f"stack {stack_name} is already deployed in this account")
        self.other_stacks[stack_name] = self._deploy_stack(stack_name, parameters or {})
        return self.other_stacks[stack_name]

    def _deploy_stack(self, stack_name: str, parameters: dict[str, Any]) -> Deployment:
        import boto3

        params = {k: v for k, v in LOCAL_PARAMETER_DEFAULTS.items() if k in self._template_parameters()}
        params.update(parameters)
        if self._session is None:
            self._session = boto3.session.Session()
        # Code and definition paths are relative to the template, as in `sam build`.
        deployer = Deployer(self._session, self.endpoint_url, self.region, self.template.resolve().parent, self.lambdas,
                            function_url_base=lambda fn: f"{self.control_url}/lambda-url/{fn}/", stack_name=stack_name)
        deployer.clients = self._deploy_clients  # botocore model loading dominates a redeploy otherwise
        deployment = deployer.deploy(self.template, params)
        self._push_training_image(str(params.get("TrainingImageTag") or "latest"), deployment.outputs)
        for spec in deployment.functions.values():
            # EMF metrics are stdout lines that CloudWatch Logs turns into metrics on AWS; in-process they would
            # land in the demo's (or a CLI command's) own output, so they are off unless function_env says otherwise.
            spec.environment.update({"SLACK_API_URL": f"{self.control_url}/slack-api/",
                                     "POWERTOOLS_METRICS_DISABLED": "true", **self.function_env})
        self._fill_secrets(deployment.outputs)
        self._start_pollers(deployment)
        return deployment

    def _push_training_image(self, tag: str, outputs: dict[str, str]) -> None:
        """What a team does once after deploying: push the training image (locally: its tag in local ECR),
        so upload runs can pin TrainingImageTag to a digest."""
        from yoloops.local.release import register_image

        repo = outputs.get("TrainingImageRepositoryName")
        if repo:
            register_image(self.client("ecr"), repo, tag)

    def _start_pollers(self, deployment: Deployment) -> None:
        from yoloops.local.event_sources import MotoQueue, SqsPoller

        self.sqs_pollers += [SqsPoller(m, MotoQueue(m.queue_url, region=self.region), self.lambdas, self.region).start()
                             for m in deployment.sqs_mappings]

    def _stop_pollers(self) -> None:
        for poller in self.sqs_pollers:
            poller.stop()
        self.sqs_pollers = []

    def reset(self, parameters: dict[str, Any] | None = None) -> None:
        """Wipe every emulated resource and deploy again (tests: a fresh account per test)."""
        import requests

        self._stop_pollers()
        requests.post(f"{self.endpoint_url}/moto-api/reset", timeout=10).raise_for_status()
        self.lambdas.release_all()
        self.lambdas.wait_idle(10)
        self.lambdas.functions.clear()
        self.lambdas.invocations.clear()
        self.slack_messages.clear()
        if isinstance(self.training, ScriptedTrainingBackend):
            self.training.reset()
        self.tuner.jobs.clear()
        if parameters is not None:
            self.parameters = dict(parameters)
        self.deploy()
        if (self.workdir / "stack.json").exists():
            (self.workdir / "stack.json").write_text(json.dumps(self.describe(), indent=2))

    def stop(self) -> None:
        self._stop_pollers()
        self.training.close()
        self.lambdas.wait_idle(5)
        self.lambdas.stop()
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
        if self._server is not None:
            self._server.stop()
        moto_patches.ACTIVE.lambdas = None
        moto_patches.ACTIVE.training = None
        moto_patches.ACTIVE.tuning = None
        moto_patches.ACTIVE.execution_ended = None
        moto_patches.ACTIVE.image_pushed = None
        for k, v in self._saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        (self.workdir / "stack.json").unlink(missing_ok=True)

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # ------------------------------------------------------------ API
    @property
    def outputs(self) -> dict[str, str]:
        return dict(self.deployment.outputs) if self.deployment else {}

    def describe(self) -> dict[str, Any]:
        # parameters: what the CLI needs to show figures (budget, metric) as the functions compute them.
        parameters = {k: str(v) for k, v in (self.deployment.parameters if self.deployment else {}).items()}
        return {"endpoint_url": self.endpoint_url, "region": self.region, "outputs": self.outputs,
                "control_url": self.control_url, "parameters": parameters}

    def client(self, service: str) -> Any:
        """A boto3 client on the local endpoint (cached: clients are thread-safe, sessions are not)."""
        import boto3

        if service not in self._clients:
            self._clients[service] = boto3.session.Session().client(
                service, endpoint_url=self.endpoint_url, region_name=self.region,
                aws_access_key_id="testing", aws_secret_access_key="testing")
        return self._clients[service]

    def stack_code(self, stack_name: str | None = None) -> str:
        """The stack code its job names carry (the functions' STACK_CODE: 8 hex characters of the stack id)."""
        deployment = self.deployment if stack_name in (None, self.stack_name) else self.other_stacks[stack_name]
        if deployment is None or not deployment.functions:
            return ""
        return next(iter(deployment.functions.values())).environment.get("STACK_CODE", "")

    def job_name(self, run_id: str, attempt: int = 1, stack_name: str | None = None) -> str:
        """The training job of a run's attempt, as the stack names it: <run id>-<stack code>-a<attempt>."""
        from yoloops_core.models import job_name

        return job_name(run_id, attempt, self.stack_code(stack_name))

    def interrupt(self, job_name: str) -> None:
        self.training.interrupt(job_name)

    def function_name(self, logical_id: str) -> str:
        return self.deployment.functions[logical_id].name

    def wait_for_execution(self, execution_arn: str, timeout: float = 60.0) -> dict[str, Any]:
        """Poll DescribeExecution until it leaves RUNNING; then let async deliveries (SNS->Slack) finish."""
        sfn = self.client("stepfunctions")
        deadline = time.monotonic() + timeout
        while True:
            desc = sfn.describe_execution(executionArn=execution_arn)
            if desc["status"] != "RUNNING":
                self.lambdas.wait_idle(timeout=max(1.0, deadline - time.monotonic()))
                return desc
            if time.monotonic() > deadline:
                raise TimeoutError(f"execution {execution_arn} still RUNNING after {timeout}s")
            time.sleep(0.1)

    # ------------------------------------------------------------ internals
    def _template_parameters(self) -> set[str]:
        from yoloops.local.deploy import load_template

        return set(load_template(self.template).get("Parameters") or {})

    def _fill_secrets(self, outputs: dict[str, str]) -> None:
        """Local values for the stack's secrets: Slack -> the local receiver; never real credentials."""
        sm = self.client("secretsmanager")
        values = {
            "SlackWebhookSecretArn": self.slack_url,
            "SlackBotTokenSecretArn": self.slack_bot_token,
            "GithubWebhookSecretArn": self.github_webhook_secret,
            "SlackSigningSecretArn": self.slack_signing_secret,
            "WandbSecretArn": "",
        }
        for output, value in values.items():
            arn = outputs.get(output)
            if arn and value is not None:
                try:
                    sm.put_secret_value(SecretId=arn, SecretString=value or " ")
                except Exception:  # moto rejects an empty SecretString; W&B stays as created
                    log.debug("secret %s left as created", output, exc_info=True)

    def slack_api(self, method: str, args: dict[str, Any], auth: str) -> tuple[int, dict[str, Any], dict[str, str]]:
        """Slack Web API, the three methods threads use: (HTTP status, JSON body, headers) as Slack answers."""
        if self.slack_reply_status == 429:
            return 429, {"ok": False, "error": "ratelimited"}, {"Retry-After": "1"}
        if self.slack_reply_status >= 500:
            return self.slack_reply_status, {"ok": False, "error": "fatal_error"}, {}
        if self.slack_reply_status >= 300:  # Slack reports API errors as HTTP 200 + ok: false
            return 200, {"ok": False, "error": "invalid_auth"}, {}
        if auth != f"Bearer {self.slack_bot_token}":
            return 200, {"ok": False, "error": "not_authed" if not auth else "invalid_auth"}, {}
        if method not in ("chat.postMessage", "chat.update", "chat.delete"):
            return 200, {"ok": False, "error": "unknown_method"}, {}
        if not args.get("channel"):
            return 200, {"ok": False, "error": "channel_not_found"}, {}
        # Slack answers with the channel's ID; chat.update and chat.delete need that ID.
        channel = args["channel"] if str(args["channel"]).startswith("C") else \
            "C" + uuid.uuid5(uuid.NAMESPACE_URL, str(args["channel"])).hex[:10].upper()
        posted = {(m["channel"], m["ts"]) for m in self.slack_messages if m.get("api") == "chat.postMessage"}
        if method == "chat.postMessage":
            if args.get("thread_ts") and (channel, args["thread_ts"]) not in posted:
                return 200, {"ok": False, "error": "thread_not_found"}, {}
            self._slack_ts += 1
            ts = f"{int(time.time())}.{self._slack_ts:06d}"
        else:
            ts = str(args.get("ts") or "")
            if (channel, ts) not in posted:
                return 200, {"ok": False, "error": "message_not_found"}, {}
        self.slack_messages.append({"api": method, **args, "channel": channel, "ts": ts})
        return 200, {"ok": True, "channel": channel, "ts": ts, "message": {"text": args.get("text", "")}}, {}

    def slack_thread(self, ts: str) -> dict[str, Any]:
        """A thread as a Slack reader sees it: the parent (as last edited) and the replies, in order."""
        parent = next(m for m in self.slack_messages if m.get("api") == "chat.postMessage" and m["ts"] == ts)
        edits = [m for m in self.slack_messages if m.get("api") == "chat.update" and m["ts"] == ts]
        replies = [m for m in self.slack_messages if m.get("api") == "chat.postMessage" and m.get("thread_ts") == ts]
        return {"parent": edits[-1] if edits else parent, "edits": len(edits), "replies": replies}

    def _dead_letter(self, queue_arn: str, event: Any, error: dict[str, Any]) -> None:
        """What Lambda sends to a function's DLQ after the last async retry (event as body + error attributes)."""
        sqs = self.client("sqs")
        url = sqs.get_queue_url(QueueName=queue_arn.rsplit(":", 1)[-1])["QueueUrl"]
        attrs = {"RequestID": error.get("requestId", ""), "ErrorCode": "200",
                 "ErrorMessage": str(error.get("errorMessage", ""))[:1000] or "unknown error"}
        sqs.send_message(QueueUrl=url, MessageBody=json.dumps(event), MessageAttributes={
            k: {"DataType": "String", "StringValue": v or "-"} for k, v in attrs.items()})

    def _emit_training_event(self, detail: dict[str, Any]) -> None:
        """SageMaker Training Job State Change -> EventBridge (default bus) -> matching rules."""
        from moto.events.models import events_backends

        event_detail = {k: (str(v) if k.endswith("Time") and isinstance(v, int) else v) for k, v in detail.items()}
        event_detail["SecondaryStatusTransitions"] = [
            {k: (str(v) if isinstance(v, int) else v) for k, v in t.items()}
            for t in detail.get("SecondaryStatusTransitions", [])
        ]
        # SageMaker puts the job's tags in the event (a map): rules select their stack's jobs by yoloops:stack.
        job = self.training.jobs.get(str(detail.get("TrainingJobName")))
        event_detail["Tags"] = {t["Key"]: t["Value"] for t in ((job.request.get("Tags") if job else None) or [])}
        backend = events_backends["123456789012"][self.region]
        backend.put_events([{
            "Source": "aws.sagemaker",
            "DetailType": "SageMaker Training Job State Change",
            "Detail": json.dumps(event_detail),
            "Resources": [detail["TrainingJobArn"]],
        }])

    def _emit_execution_event(self, detail: dict[str, Any]) -> None:
        """Step Functions Execution Status Change -> EventBridge (default bus) -> matching rules."""
        from moto.events.models import events_backends

        events_backends["123456789012"][self.region].put_events([{
            "Source": "aws.states",
            "DetailType": "Step Functions Execution Status Change",
            "Detail": json.dumps({k: v for k, v in detail.items() if v is not None}),
            "Resources": [detail["executionArn"]],
        }])

    def _emit_image_pushed(self, repository: str, tag: str | None, digest: str) -> None:
        """ECR Image Action (a completed push) -> EventBridge (default bus) -> matching rules."""
        from moto.events.models import events_backends

        detail = {"result": "SUCCESS", "repository-name": repository, "image-digest": digest,
                  "action-type": "PUSH", **({"image-tag": tag} if tag else {})}
        events_backends["123456789012"][self.region].put_events([{
            "Source": "aws.ecr", "DetailType": "ECR Image Action", "Detail": json.dumps(detail), "Resources": []}])

    def _start_http(self) -> None:
        stack = self

        class Handler(_QuietHandler):
            def do_GET(self) -> None:
                path = urlsplit(self.path).path
                if path == "/slack":
                    self._reply(200, json.dumps(stack.slack_messages))
                elif path == "/health":
                    self._reply(200, json.dumps(stack.describe()))
                elif path.startswith("/lambda-url/"):
                    self._function_url("GET")
                else:
                    self._reply(404, '{"message": "not found"}')

            def do_POST(self) -> None:
                path = urlsplit(self.path).path
                if path.startswith("/slack-webhook"):
                    body = self._body()
                    try:
                        message = json.loads(body)
                    except ValueError:
                        self._reply(400, "invalid_payload", {"Content-Type": "text/plain"})
                        return
                    if stack.slack_reply_status >= 300:
                        self._reply(stack.slack_reply_status, "invalid_token", {"Content-Type": "text/plain"})
                        return
                    stack.slack_messages.append(message)
                    self._reply(200, "ok", {"Content-Type": "text/plain"})
                elif path.startswith("/slack-api/"):
                    raw = self._body()
                    ctype = self.headers.get("Content-Type") or ""
                    try:
                        args = json.loads(raw) if "json" in ctype else dict(parse_qsl(raw.decode()))
                    except ValueError:
                        self._reply(200, json.dumps({"ok": False, "error": "invalid_json"}))
                        return
                    status, body, headers = stack.slack_api(path.rsplit("/", 1)[-1], args,
                                                            self.headers.get("Authorization") or "")
                    self._reply(status, json.dumps(body), {"Content-Type": "application/json", **headers})
                elif path.startswith("/interrupt/"):
                    job = path.split("/", 2)[2]
                    try:
                        stack.interrupt(job)
                    except (KeyError, RuntimeError, NotImplementedError) as exc:
                        self._reply(409, json.dumps({"error": str(exc)}))
                        return
                    self._reply(202, json.dumps({"interrupted": job}))
                elif path.startswith("/lambda-url/"):
                    self._function_url("POST")
                else:
                    self._reply(404, '{"message": "not found"}')

            def _function_url(self, method: str) -> None:
                """Lambda function URL: HTTP request -> payload format 2.0 event -> HTTP response."""
                parts = urlsplit(self.path)
                _, _, fn, *rest = parts.path.split("/", 3)
                raw = self._body()
                text_types = ("json", "text", "xml", "form-urlencoded")
                is_text = any(t in (self.headers.get("Content-Type") or "") for t in text_types) or not raw
                now = time.time()
                event = {
                    "version": "2.0",
                    "routeKey": "$default",
                    "rawPath": "/" + (rest[0] if rest else ""),
                    "rawQueryString": parts.query,
                    "headers": {k.lower(): v for k, v in self.headers.items()},
                    "queryStringParameters": dict(parse_qsl(parts.query)) or None,
                    "requestContext": {
                        "accountId": "anonymous", "apiId": fn, "domainName": self.headers.get("Host", ""),
                        "domainPrefix": fn, "requestId": str(uuid.uuid4()), "routeKey": "$default",
                        "stage": "$default", "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
                        "timeEpoch": int(now * 1000),
                        "http": {"method": method, "path": "/" + (rest[0] if rest else ""), "protocol": "HTTP/1.1",
                                 "sourceIp": self.client_address[0], "userAgent": self.headers.get("User-Agent", "")},
                    },
                    "body": raw.decode() if is_text else base64.b64encode(raw).decode(),
                    "isBase64Encoded": not is_text,
                }
                if event["queryStringParameters"] is None:
                    del event["queryStringParameters"]
                try:
                    result, error = stack.lambdas.invoke(fn, event, source="function-url")
                except KeyError:
                    self._reply(404, '{"Message": "function not found"}')
                    return
                if error is not None:
                    self._reply(502, '{"Message": "Internal Server Error"}')
                    return
                if not isinstance(result, dict) or "statusCode" not in result:
                    self._reply(200, json.dumps(result))
                    return
                body = result.get("body") or ""
                data = base64.b64decode(body) if result.get("isBase64Encoded") else str(body).encode()
                headers = {"Content-Type": "application/json", **(result.get("headers") or {})}
                self._reply(int(result["statusCode"]), data, headers)

        self._http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._http.daemon_threads = True
        threading.Thread(target=self._http.serve_forever, name="local-stack-http", daemon=True).start()
        base = f"http://127.0.0.1:{self._http.server_address[1]}"
        self.control_url = base
        self.slack_url = f"{base}/slack-webhook/local"
