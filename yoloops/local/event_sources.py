"""SQS -> Lambda event source mappings for the local stack (moto stores them but never polls).

One poller thread per mapping does what Lambda's SQS poller does: receive up to BatchSize messages,
gathering for up to MaximumBatchingWindowInSeconds (and at most 6 MB of bodies), invoke the function
synchronously with the SQS event shape, delete what succeeded, and leave what failed (a raised error:
the whole batch; `batchItemFailures` with ReportBatchItemFailures: those records) to come back after a
short visibility timeout, so the queue's RedrivePolicy moves poison messages to its DLQ. AWS waits the
queue's VisibilityTimeout before a retry; locally only the order matters, so retries come back fast.

The poller reads the queue in moto's backend (the stack's moto server runs in this process), as Lambda's
poller fleet is AWS-internal too: moto scans the whole queue on every 10-message ReceiveMessage and every
DeleteMessage, so draining a 10,000-object sync through the API costs O(n^2) scans (about 20 messages/s
here). One receive of up to BatchSize messages and one delete pass per batch keep it linear; the
messages, receive counts, visibility and redrive are moto's own.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("yoloops.local.sqs")

MAX_PAYLOAD_BYTES = 6 * 1024 * 1024  # Lambda's synchronous invocation payload limit


@dataclass
class SqsMapping:
    function: str  # physical function name
    queue_arn: str
    queue_url: str
    batch_size: int = 10
    window_s: float = 0.0
    report_item_failures: bool = False
    retry_visibility_s: int = 1
    batches: list[int] = field(default_factory=list)  # sizes of the batches delivered (tests, benchmarks)


class SqsPoller:
    """Polls one queue for one mapping until `stop()`."""

    def __init__(self, mapping: SqsMapping, queue: MotoQueue, runtime: Any, region: str):
        self.mapping = mapping
        self.queue = queue
        self.runtime = runtime
        self.region = region
        self._stop = threading.Event()
        self._busy = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"local-sqs-{mapping.function}", daemon=True)

    def start(self) -> SqsPoller:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    @property
    def busy(self) -> bool:
        return self._busy.is_set()

    def _receive(self, limit: int, wait: int) -> list[dict[str, Any]]:
        return self.queue.receive(max(1, limit), wait)

    def _gather(self) -> list[dict[str, Any]]:
        m = self.mapping
        messages = self._receive(m.batch_size, 1)
        if not messages:
            return []
        self._busy.set()
        deadline = time.monotonic() + m.window_s
        size = sum(len(x["Body"]) for x in messages)
        while len(messages) < m.batch_size and size < MAX_PAYLOAD_BYTES and not self._stop.is_set():
            if time.monotonic() >= deadline:
                break
            # Poll at intervals, not in a tight loop: each receive scans the queue once, so a sync that adds a
            # message at a time would otherwise cost one scan per message.
            time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))
            more = self._receive(m.batch_size - len(messages), 0)
            messages += more
            size += sum(len(x["Body"]) for x in more)
        return messages

    def _event(self, messages: list[dict[str, Any]]) -> dict[str, Any]:
        return {"Records": [{
            "messageId": x["MessageId"],
            "receiptHandle": x["ReceiptHandle"],
            "body": x["Body"],
            "attributes": x.get("Attributes", {}),
            "messageAttributes": x.get("MessageAttributes", {}),
            "md5OfBody": x.get("MD5OfBody") or hashlib.md5(x["Body"].encode()).hexdigest(),
            "eventSource": "aws:sqs",
            "eventSourceARN": self.mapping.queue_arn,
            "awsRegion": self.region,
        } for x in messages]}

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                messages = self._gather()
                if messages:
                    self._deliver(messages)
            except Exception:  # the endpoint went away (stack stopping) or a transient error
                if not self._stop.is_set():
                    log.exception("SQS poller for %s failed; retrying", self.mapping.function)
                    time.sleep(0.5)
            finally:
                self._busy.clear()

    def _deliver(self, messages: list[dict[str, Any]]) -> None:
        m = self.mapping
        m.batches.append(len(messages))
        result, error = self.runtime.invoke(m.function, self._event(messages), source="sqs")
        failed: set[str] = set()
        if error is not None:
            failed = {x["MessageId"] for x in messages}
        elif m.report_item_failures and isinstance(result, dict):
            items = result.get("batchItemFailures") or []
            ids = {x["MessageId"] for x in messages}
            failed = {str(i.get("itemIdentifier")) for i in items if isinstance(i, dict)}
            if failed - ids:  # an identifier that is not in the batch fails the whole batch (as in AWS)
                failed = ids
        self.queue.delete([x["ReceiptHandle"] for x in messages if x["MessageId"] not in failed])
        for x in messages:
            if x["MessageId"] in failed:
                self.queue.change_visibility(x["ReceiptHandle"], m.retry_visibility_s)
        if failed:
            log.warning("%s: %d of %d SQS records failed; they come back", m.function, len(failed), len(messages))


class MotoQueue:
    """One SQS queue in this process's moto backend: receive many, delete many, in one pass each."""

    def __init__(self, queue_url: str, account: str = "123456789012", region: str = "us-east-1"):
        from moto.sqs.models import sqs_backends

        self.backend = sqs_backends[account][region]
        self.name = queue_url.rstrip("/").rsplit("/", 1)[-1]

    def receive(self, limit: int, wait: int) -> list[dict[str, Any]]:
        queue = self.backend.get_queue(self.name)
        got = self.backend.receive_message(self.name, limit, wait, int(queue.visibility_timeout), ["All"])
        return [self._shape(x) for x in got]

    @staticmethod
    def _shape(x: Any) -> dict[str, Any]:
        """ReceiveMessage's response shape (AttributeNames=All), as the Lambda event builder reads it."""
        return {
            "MessageId": x.id, "ReceiptHandle": x.receipt_handle, "Body": x.body, "MD5OfBody": x.body_md5,
            "MessageAttributes": dict(x.message_attributes or {}),
            "Attributes": {"SenderId": x.sender_id, "SentTimestamp": str(x.sent_timestamp),
                           "ApproximateReceiveCount": str(x.approximate_receive_count),
                           "ApproximateFirstReceiveTimestamp": str(x.approximate_first_receive_timestamp)},
        }

    def delete(self, receipt_handles: list[str]) -> None:
        if not receipt_handles:
            return
        queue = self.backend.get_queue(self.name)
        wanted = set(receipt_handles)
        # Under the lock moto's add_message appends with, so no message sent meanwhile is lost.
        with queue._messages_lock:
            kept = []
            for message in queue._messages:
                if message.receipt_handle in wanted:
                    queue.pending_messages.discard(message)
                    queue.deleted_messages.update(message.all_receipt_handles)
                else:
                    kept.append(message)
            queue._messages = kept

    def change_visibility(self, receipt_handle: str, seconds: int) -> None:
        self.backend.change_message_visibility(self.name, receipt_handle, seconds)


def mapping_from_properties(props: dict[str, Any], function: str, queue_url: str) -> SqsMapping:
    """AWS::Lambda::EventSourceMapping properties (resolved) -> SqsMapping, with AWS's defaults/limits."""
    batch = int(props.get("BatchSize", 10))
    window = float(props.get("MaximumBatchingWindowInSeconds", 0))
    if not 1 <= batch <= 10000:
        raise ValueError(f"BatchSize {batch} is outside 1..10000")
    if batch > 10 and window < 1:
        raise ValueError("BatchSize > 10 needs MaximumBatchingWindowInSeconds >= 1 (as AWS requires)")
    return SqsMapping(function=function, queue_arn=props["EventSourceArn"], queue_url=queue_url, batch_size=batch,
                      window_s=window, report_item_failures="ReportBatchItemFailures" in (props.get("FunctionResponseTypes") or []))
