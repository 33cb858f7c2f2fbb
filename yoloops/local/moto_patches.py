"""The narrow adaptations of moto 5.2.5 the local stack needs (installed once per process).

1. Step Functions: `arn:aws:states:::sagemaker:createTrainingJob.sync` is dispatched to the local
   TrainingBackend (moto forwards SageMaker to its own backend and has no `.sync` resolver).
2. Lambda: `LambdaFunction.invoke` (Step Functions `lambda:invoke`, the Invoke API) runs the handler
   in-process through `LambdaRuntime` instead of Docker.
3. S3 bucket notifications, SNS lambda subscriptions and EventBridge rules with Lambda targets deliver
   asynchronously through the same runtime, with event shapes as AWS sends them.

Everything is routed through `ACTIVE`, the runtime of the local stack that is up in this process.
"""

from __future__ import annotations

import functools
import json
import logging
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

log = logging.getLogger("yoloops.local.moto")


@dataclass
class Active:
    """What the patched moto code calls into (one local stack per process)."""

    lambdas: Any = None  # LambdaRuntime
    training: Any = None  # TrainingBackend
    tuning: Any = None  # yoloops.local.tuning.LocalTuner (hyperparameter tuning jobs on the training backend)
    execution_ended: Any = None  # callable(detail): a Step Functions execution reached a final status
    image_pushed: Any = None  # callable(repository, tag, digest): PutImage succeeded


ACTIVE = Active()
_installed = False
_install_lock = threading.Lock()


def install() -> None:
    global _installed
    with _install_lock:
        if _installed:
            return
        from moto.core.config import default_user_config

        default_user_config["stepfunctions"]["execute_state_machine"] = True
        _patch_sfn_sagemaker()
        _patch_lambda_invoke()
        _patch_s3_notifications()
        _patch_s3_multipart_events()
        _patch_sqs_message_cost()
        _patch_sns_lambda()
        _patch_events_lambda()
        _patch_sagemaker_api()
        _patch_sagemaker_stop_and_tags()
        _patch_sfn_status_events()
        _patch_sfn_stop_is_synchronous()
        _patch_ecr_push_events()
        _installed = True


# ------------------------------------------------------------------ Step Functions -> SageMaker .sync

# SageMaker's modeled errors, which Step Functions names after their SDK exception class; every other
# code (ValidationException, ThrottlingException, InternalFailure...) arrives as AmazonSageMakerException
# with the code only in the Cause (Step Functions developer guide, connect-sagemaker).
_MODELED_SAGEMAKER_ERRORS = {"ResourceLimitExceeded", "ResourceInUse", "ResourceNotFound"}


def sfn_error_name(code: str) -> str:
    """The `Error` a Catch sees for a SageMaker API error code, as AWS sends it."""
    return f"SageMaker.{code}Exception" if code in _MODELED_SAGEMAKER_ERRORS else "SageMaker.AmazonSageMakerException"


def _patch_sfn_sagemaker() -> None:
    from moto.stepfunctions.parser.api import HistoryEventType, TaskFailedEventDetails
    from moto.stepfunctions.parser.asl.component.common.error_name.custom_error_name import CustomErrorName
    from moto.stepfunctions.parser.asl.component.common.error_name.failure_event import (
        FailureEvent,
        FailureEventException,
    )
    from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name import StatesErrorName
    from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name_type import (
        StatesErrorNameType,
    )
    from moto.stepfunctions.parser.asl.component.state.exec.state_task import state_task_factory
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.resource import (
        ResourceCondition,
    )
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_callback import (
        StateTaskServiceCallback,
    )
    from moto.stepfunctions.parser.asl.eval.event.event_detail import EventDetails
    from moto.stepfunctions.parser.asl.utils.encoding import to_json_str

    from yoloops.local.training import SageMakerApiError

    patterns: Final = {ResourceCondition.WaitForTaskToken, ResourceCondition.Sync}
    # CreateTrainingJob request members Step Functions accepts for this integration.
    params: Final = {
        "createtrainingjob": {
            "AlgorithmSpecification", "CheckpointConfig", "DebugHookConfig", "DebugRuleConfigurations",
            "EnableInterContainerTrafficEncryption", "EnableManagedSpotTraining", "EnableNetworkIsolation",
            "Environment", "ExperimentConfig", "HyperParameters", "InputDataConfig", "OutputDataConfig",
            "ProfilerConfig", "ProfilerRuleConfigurations", "ResourceConfig", "RetryStrategy", "RoleArn",
            "StoppingCondition", "Tags", "TensorBoardOutputConfig", "TrainingJobName", "VpcConfig",
        },
        "describetrainingjob": {"TrainingJobName"},
        "stoptrainingjob": {"TrainingJobName"},
        "createhyperparametertuningjob": {
            "Autotune", "HyperParameterTuningJobConfig", "HyperParameterTuningJobName", "Tags",
            "TrainingJobDefinition", "TrainingJobDefinitions", "WarmStartConfig",
        },
    }

    class StateTaskServiceSageMakerLocal(StateTaskServiceCallback):
        def __init__(self) -> None:
            super().__init__(supported_integration_patterns=patterns)

        def _get_supported_parameters(self) -> set[str] | None:
            return params.get(self.resource.api_action.lower())

        def _from_error(self, env, ex):
            if isinstance(ex, SageMakerApiError):
                error = sfn_error_name(ex.code)
                request_id = str(uuid.uuid4())
                cause = (
                    f"{ex.message} (Service: AmazonSageMaker; Status Code: {ex.status}; "
                    f"Error Code: {ex.code}; Request ID: {request_id}; Proxy: null)"
                )
                return FailureEvent(
                    env=env,
                    error_name=CustomErrorName(error),
                    event_type=HistoryEventType.TaskFailed,
                    event_details=EventDetails(
                        taskFailedEventDetails=TaskFailedEventDetails(
                            error=error, cause=cause,
                            resource=self._get_sfn_resource(), resourceType=self._get_sfn_resource_type(),
                        )
                    ),
                )
            return super()._from_error(env=env, ex=ex)

        def _eval_service_task(self, env, resource_runtime_part, normalised_parameters, state_credentials):
            backend = ACTIVE.training
            if backend is None:
                raise SageMakerApiError("InternalFailure", "no local training backend is attached")
            action = self.resource.api_action.lower()
            if action == "createhyperparametertuningjob":
                if ACTIVE.tuning is None:
                    raise SageMakerApiError("InternalFailure", "no local tuner is attached")
                response = ACTIVE.tuning.create(normalised_parameters)
                execution = env.states.context_object.context_object_data["Execution"]["Id"]
                ACTIVE.tuning.by_execution[execution] = normalised_parameters["HyperParameterTuningJobName"]
            elif action == "createtrainingjob":
                response = backend.create_training_job(normalised_parameters)
            elif action == "describetrainingjob":
                response = backend.describe_training_job(normalised_parameters["TrainingJobName"])
            else:
                raise SageMakerApiError("ValidationException", f"{self.resource.api_action} is not emulated locally")
            env.stack.append(response)

        def _build_sync_resolver(self, env, resource_runtime_part, normalised_parameters, state_credentials
                                 ) -> Callable[[], Any] | None:
            env.stack.pop()  # the Create* response
            tuning = "HyperParameterTuningJobName" in normalised_parameters
            name = normalised_parameters["HyperParameterTuningJobName" if tuning else "TrainingJobName"]
            backend = ACTIVE.training
            tuner = ACTIVE.tuning

            def _resolve() -> dict | None:
                # createHyperParameterTuningJob.sync ends like createTrainingJob.sync: the Describe output, or
                # States.TaskFailed with it as the Cause.
                description = tuner.describe(name) if tuning else backend.describe_training_job(name)
                status = description["HyperParameterTuningJobStatus" if tuning else "TrainingJobStatus"]
                if status == "Completed":
                    return description
                if status in ("Failed", "Stopped"):
                    # Exactly what AWS gives the Catch: States.TaskFailed, Cause = DescribeTrainingJob JSON.
                    raise FailureEventException(
                        FailureEvent(
                            env=env,
                            error_name=StatesErrorName(typ=StatesErrorNameType.StatesTaskFailed),
                            event_type=HistoryEventType.TaskFailed,
                            event_details=EventDetails(
                                taskFailedEventDetails=TaskFailedEventDetails(
                                    resource=self._get_sfn_resource(),
                                    resourceType=self._get_sfn_resource_type(),
                                    error=StatesErrorNameType.StatesTaskFailed.to_name(),
                                    cause=to_json_str(description),
                                )
                            ),
                        )
                    )
                return None

            return _resolve

    original = state_task_factory.state_task_service_for

    def state_task_service_for(service_name: str):
        if service_name == "sagemaker":
            return StateTaskServiceSageMakerLocal()
        return original(service_name)

    state_task_factory.state_task_service_for = state_task_service_for


# ------------------------------------------------------------------ Lambda invoke -> in-process

def _patch_lambda_invoke() -> None:
    from moto.awslambda.models import LambdaFunction

    original = LambdaFunction.invoke

    def invoke(self, body, request_headers, response_headers):
        runtime = ACTIVE.lambdas
        if runtime is None or self.function_name not in runtime.functions:
            return original(self, body, request_headers, response_headers)
        event = json.loads(body) if body else {}
        inv_type = (request_headers or {}).get("x-amz-invocation-type") or (request_headers or {}).get(
            "X-Amz-Invocation-Type", "RequestResponse")
        if inv_type == "Event":
            runtime.invoke_async(self.function_name, event, source="invoke-async")
            return b""
        result, error = runtime.invoke(self.function_name, event, source="sync")
        if error is not None:
            response_headers["x-amz-function-error"] = "Unhandled"
            return json.dumps(error).encode()
        return json.dumps(result).encode()

    LambdaFunction.invoke = invoke


# ------------------------------------------------------------------ async sources

def _patch_s3_notifications() -> None:
    from moto.s3 import notifications

    original = notifications._invoke_awslambda

    def _invoke_awslambda(account_id, event_body, fn_arn, region_name):
        runtime = ACTIVE.lambdas
        try:
            runtime.resolve(fn_arn)
        except (AttributeError, KeyError):
            return original(account_id, event_body, fn_arn, region_name)
        # S3 URL-encodes keys in notifications but keeps "/" (moto encodes it as %2F).
        from urllib.parse import quote_plus, unquote_plus

        for record in event_body.get("Records", []):
            obj = record.get("s3", {}).get("object", {})
            if "key" in obj:
                obj["key"] = quote_plus(unquote_plus(obj["key"]), safe="/")
        runtime.invoke_async(fn_arn, event_body, source="s3")

    notifications._invoke_awslambda = _invoke_awslambda


def _flagged_while_running(method: Callable, flag: threading.local) -> Callable:
    """`method`, with `flag.active` True in the calling thread while it runs (the outer value restored after),
    so a patched function deeper down can tell it was reached from inside `method`."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        outer = getattr(flag, "active", False)
        flag.active = True
        try:
            return method(self, *args, **kwargs)
        finally:
            flag.active = outer

    return wrapper


def _patch_s3_multipart_events() -> None:
    """S3 sends one ObjectCreated:CompleteMultipartUpload per completed upload; moto 5.2.5 also sends an
    ObjectCreated:Put (its completion goes through put_object), which S3 never does."""
    from moto.s3 import models, notifications

    original_send = notifications.send_event
    completing = threading.local()  # .active while a CompleteMultipartUpload runs in this thread

    def send_event(account_id, event_name, bucket, key):
        if getattr(completing, "active", False) and event_name == notifications.S3NotificationEvent.OBJECT_CREATED_PUT_EVENT:
            return None
        return original_send(account_id, event_name, bucket, key)

    notifications.send_event = send_event
    models.S3Backend.complete_multipart_upload = _flagged_while_running(
        models.S3Backend.complete_multipart_upload, completing)


def _patch_sqs_message_cost() -> None:
    """moto 5.2.5 reads a queue's attributes for one flag or setting on every message it sends
    (ContentBasedDeduplication) and on every message it receives (MessageRetentionPeriod), and building
    those attributes counts the queue's messages three times. A 10,000-object sync then costs O(n^2):
    17 s to send and 56 s to receive 1,000 S3 events, hours for 10,000. Inside SendMessage and
    ReceiveMessage the counts read 0; GetQueueAttributes still counts for real."""
    from moto.sqs import models

    inside = threading.local()
    for name in ("approximate_number_of_messages", "approximate_number_of_messages_delayed",
                 "approximate_number_of_messages_not_visible"):
        count = getattr(models.Queue, name).fget
        setattr(models.Queue, name, property(lambda self, count=count: 0 if getattr(inside, "active", False)
                                             else count(self)))

    models.SQSBackend.send_message = _flagged_while_running(models.SQSBackend.send_message, inside)
    models.SQSBackend.receive_message = _flagged_while_running(models.SQSBackend.receive_message, inside)


def _iso_ms(ts: datetime | None = None) -> str:
    ts = ts or datetime.now(UTC)
    return ts.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z"


def _patch_sns_lambda() -> None:
    from moto.sns.models import Subscription

    original = Subscription.publish

    def publish(self, message, message_id, subject=None, message_attributes=None, group_id=None,
                deduplication_id=None, message_structure=None):
        runtime = ACTIVE.lambdas
        if self.protocol != "lambda" or runtime is None:
            return original(self, message, message_id, subject, message_attributes, group_id,
                            deduplication_id, message_structure)
        try:
            runtime.resolve(self.endpoint)
        except KeyError:
            return original(self, message, message_id, subject, message_attributes, group_id,
                            deduplication_id, message_structure)
        if self._filter_policy_matcher is not None and not self._filter_policy_matcher.matches(
                message_attributes, message):
            return None
        if message_structure == "json":
            message = self._parse_message_structure(message, self.protocol)
        attrs = {
            name: {"Type": spec.get("DataType", "String"),
                   "Value": spec.get("StringValue", spec.get("BinaryValue"))}
            for name, spec in (message_attributes or {}).items()
        }
        event = {"Records": [{
            "EventSource": "aws:sns",
            "EventVersion": "1.0",
            "EventSubscriptionArn": self.arn,
            "Sns": {
                "Type": "Notification",
                "MessageId": message_id,
                "TopicArn": self.topic_arn,
                "Subject": subject,
                "Message": message,
                "Timestamp": _iso_ms(),
                "SignatureVersion": "1",
                "Signature": "EXAMPLE",
                "SigningCertUrl": "EXAMPLE",
                "UnsubscribeUrl": "EXAMPLE",
                "MessageAttributes": attrs,
            },
        }]}
        runtime.invoke_async(self.endpoint, event, source="sns")
        return None

    Subscription.publish = publish


def _patch_events_lambda() -> None:
    from moto.events.models import Rule

    original = Rule.send_to_targets

    def send_to_targets(self, original_event, transform_input=True):
        if self.scheduled_expression and not self.event_pattern._pattern:
            # A schedule rule is not matched by events (moto's empty pattern matches every event, so the
            # watchdog and the price refresh ran on each SageMaker/Step Functions event).
            return None
        runtime = ACTIVE.lambdas
        lambda_targets = [t for t in self.targets if ":lambda:" in t["Arn"] and ":function:" in t["Arn"]]
        if runtime is None or not lambda_targets:
            return original(self, original_event, transform_input)
        if not self.event_pattern.matches_event(original_event):
            return None
        others = [t for t in self.targets if t not in lambda_targets]
        for target in lambda_targets:
            event = original_event
            if "Input" in target:
                event = json.loads(target["Input"])
            runtime.invoke_async(target["Arn"], event, source="events")
        if others:
            saved = self.targets
            self.targets = others
            try:
                original(self, original_event, transform_input)
            finally:
                self.targets = saved
        return None

    Rule.send_to_targets = send_to_targets


# ------------------------------------------------------------------ SageMaker API mirrors the backend

_TIME_KEYS = {"CreationTime", "LastModifiedTime", "TrainingStartTime", "TrainingEndTime", "StartTime",
              "EndTime", "Timestamp", "HyperParameterTuningEndTime"}


def _api_times(value: Any) -> Any:
    """Epoch-ms fields (the `.sync` output shape) -> datetimes for moto's API serializer."""
    if isinstance(value, list):
        return [_api_times(v) for v in value]
    if isinstance(value, dict):
        return {k: (datetime.fromtimestamp(v / 1000, UTC) if k in _TIME_KEYS and isinstance(v, int | float)
                    else _api_times(v)) for k, v in value.items()}
    return value


def _patch_sagemaker_api() -> None:
    """DescribeTrainingJob / ListTrainingJobs on the local endpoint show the local backend's jobs."""
    from moto.sagemaker.models import SageMakerModelBackend

    original_describe = SageMakerModelBackend.describe_training_job
    original_list = SageMakerModelBackend.list_training_jobs

    def describe_training_job(self, training_job_name):
        backend = ACTIVE.training
        if backend is not None and training_job_name in backend.jobs:
            return _api_times(backend.describe_training_job(training_job_name))
        return original_describe(self, training_job_name)

    def list_training_jobs(self, next_token, max_results, creation_time_after, creation_time_before,
                           last_modified_time_after, last_modified_time_before, name_contains, status_equals):
        backend = ACTIVE.training
        if backend is None or not backend.jobs:
            return original_list(self, next_token, max_results, creation_time_after, creation_time_before,
                                 last_modified_time_after, last_modified_time_before, name_contains,
                                 status_equals)
        rows = []
        for name in list(backend.jobs):
            d = _api_times(backend.describe_training_job(name))
            if name_contains and name_contains not in name:
                continue
            if status_equals and d["TrainingJobStatus"] != status_equals:
                continue
            rows.append({k: d[k] for k in ("TrainingJobName", "TrainingJobArn", "CreationTime", "LastModifiedTime",
                                           "TrainingJobStatus", "TrainingEndTime") if k in d})
        start = int(next_token or 0)
        end = start + int(max_results or 100)
        return {"TrainingJobSummaries": rows[start:end], "NextToken": str(end) if end < len(rows) else None}

    SageMakerModelBackend.describe_training_job = describe_training_job
    SageMakerModelBackend.list_training_jobs = list_training_jobs


# ------------------------------------------------------------------ StopTrainingJob, ListTags (moto has neither for our jobs)

def _patch_sagemaker_stop_and_tags() -> None:
    from moto.core.responses import ActionResult
    from moto.sagemaker.exceptions import ValidationError
    from moto.sagemaker.models import SageMakerModelBackend
    from moto.sagemaker.responses import SageMakerResponse

    from yoloops.local.training import SageMakerApiError

    def stop_training_job(self) -> ActionResult:
        name = self._get_param("TrainingJobName")
        backend = ACTIVE.training
        if backend is None or name not in backend.jobs:
            raise ValidationError(f"Requested resource not found: {name}")
        try:
            backend.stop_training_job(name)
        except SageMakerApiError as exc:
            raise ValidationError(exc.message) from None
        return ActionResult({})

    original_list_tags = SageMakerModelBackend.list_tags

    def list_tags(self, arn):
        backend = ACTIVE.training
        if backend is not None:
            for job in list(backend.jobs.values()):
                if job.arn == arn or job.arn.lower() == str(arn).lower():
                    return list(job.request.get("Tags") or [])
        return original_list_tags(self, arn)

    original_create = SageMakerResponse.create_training_job

    def create_training_job(self) -> ActionResult:
        """A CreateTrainingJob sent to the endpoint (not through Step Functions: `yoloops image probe`) runs
        as a local job too, so DescribeTrainingJob and StopTrainingJob above find it."""
        backend = ACTIVE.training
        if backend is None:
            return original_create(self)
        body = self.body.decode() if isinstance(self.body, bytes) else self.body
        try:
            return ActionResult(backend.create_training_job(json.loads(body or "{}")))
        except SageMakerApiError as exc:
            if exc.code == "ValidationException":
                raise ValidationError(exc.message) from None
            from moto.core.exceptions import JsonRESTError

            raise JsonRESTError(exc.code, exc.message) from None

    SageMakerResponse.stop_training_job = stop_training_job
    _patch_sagemaker_tuning_api(SageMakerResponse, ActionResult, ValidationError)
    SageMakerResponse.create_training_job = create_training_job
    SageMakerModelBackend.list_tags = list_tags


def _patch_sagemaker_tuning_api(response_class: Any, action_result: Any, validation_error: Any) -> None:
    """DescribeHyperParameterTuningJob and ListTrainingJobsForHyperParameterTuningJob show the local tuner's
    jobs (moto has no ListTrainingJobsFor...; its Describe knows only tuning jobs it created itself)."""
    from yoloops.local.training import SageMakerApiError

    original_describe = response_class.describe_hyper_parameter_tuning_job

    def describe_hyper_parameter_tuning_job(self):
        name = self._get_param("HyperParameterTuningJobName")
        tuner = ACTIVE.tuning
        if tuner is None or name not in tuner.jobs:
            return original_describe(self)
        return action_result(_api_times(tuner.describe(name)))

    def list_training_jobs_for_hyper_parameter_tuning_job(self):
        from moto.sagemaker.exceptions import ResourceNotFound

        name = self._get_param("HyperParameterTuningJobName")
        tuner = ACTIVE.tuning
        try:
            rows = tuner.list_training_jobs(name) if tuner is not None else None
        except SageMakerApiError as exc:  # SageMaker answers ResourceNotFound for an unknown tuning job
            raise ResourceNotFound(exc.message) from None
        if rows is None:
            raise ResourceNotFound(f"Amazon SageMaker can't find a tuning job with name {name}")
        start = int(self._get_param("NextToken") or 0)
        end = start + int(self._get_param("MaxResults") or 10)
        return action_result({"TrainingJobSummaries": _api_times(rows[start:end]),
                              **({"NextToken": str(end)} if end < len(rows) else {})})

    response_class.describe_hyper_parameter_tuning_job = describe_hyper_parameter_tuning_job
    response_class.list_training_jobs_for_hyper_parameter_tuning_job = list_training_jobs_for_hyper_parameter_tuning_job


# ------------------------------------------------------------------ execution status -> EventBridge

def _patch_sfn_status_events() -> None:
    """Step Functions sends "Execution Status Change" events to EventBridge; moto does not."""
    from moto.stepfunctions.parser.backend.execution import BaseExecutionWorkerCommunication

    original = BaseExecutionWorkerCommunication.terminated

    def terminated(self) -> None:
        original(self)
        callback = ACTIVE.execution_ended
        if callback is None:
            return
        ex = self.execution
        try:
            callback({
                "executionArn": ex.exec_arn, "stateMachineArn": ex.state_machine.arn, "name": ex.name,
                "status": ex.exec_status.value, "startDate": int(ex.start_date.timestamp() * 1000),
                "stopDate": int(ex.stop_date.timestamp() * 1000) if ex.stop_date else None,
                "error": getattr(ex, "error", None), "cause": getattr(ex, "cause", None),
            })
        except Exception:  # events are best effort, as on AWS
            log.exception("could not emit the execution status event of %s", ex.exec_arn)

    BaseExecutionWorkerCommunication.terminated = terminated


def _patch_sfn_stop_is_synchronous() -> None:
    """StopExecution returns with the execution ABORTED, as on AWS (a DescribeExecution right after sees it).

    moto only flags the program as stopped; its worker thread notices at its next poll and writes the
    status later, so under load `aws stepfunctions describe-execution` after a stop still said RUNNING.
    """
    from moto.stepfunctions.parser.api import ExecutionStatus
    from moto.stepfunctions.parser.asl.eval.program_state import ProgramStopped
    from moto.stepfunctions.parser.backend.execution import BaseExecutionWorkerCommunication, Execution

    original_stop = Execution.stop
    original_reflect = BaseExecutionWorkerCommunication._reflect_execution_status

    def stop(self, stop_date, error, cause) -> None:
        original_stop(self, stop_date=stop_date, error=error, cause=cause)
        worker = self.exec_worker
        stopped = (worker is not None and worker.env is not None
                   and isinstance(worker.env.program_state(), ProgramStopped))
        if stopped and self.exec_status == ExecutionStatus.RUNNING:
            self.exec_status, self.stop_date = ExecutionStatus.ABORTED, stop_date
        if ACTIVE.tuning is not None:  # a .sync tuning job is stopped with its execution, as on AWS
            ACTIVE.tuning.stop_execution(self.exec_arn)

    def reflect(self) -> None:
        # The worker reflects the same stop later: keep the stop date StopExecution set.
        ex = self.execution
        stopped_at = ex.stop_date if ex.exec_status == ExecutionStatus.ABORTED else None
        original_reflect(self)
        if stopped_at and ex.exec_status == ExecutionStatus.ABORTED:
            ex.stop_date = stopped_at

    Execution.stop = stop
    BaseExecutionWorkerCommunication._reflect_execution_status = reflect


# ------------------------------------------------------------------ ECR push -> EventBridge

def _patch_ecr_push_events() -> None:
    """ECR sends "ECR Image Action" (PUSH, SUCCESS) to EventBridge after each push; moto does not."""
    from moto.ecr.models import ECRBackend

    original = ECRBackend.put_image

    def put_image(self, repository_name, image_manifest, image_tag, *args, **kwargs):
        image = original(self, repository_name, image_manifest, image_tag, *args, **kwargs)
        callback = ACTIVE.image_pushed
        if callback is not None:
            try:
                callback(repository_name, image_tag, image.get_image_digest())
            except Exception:  # events are best effort, as on AWS
                log.exception("could not emit the push event of %s:%s", repository_name, image_tag)
        return image

    ECRBackend.put_image = put_image
