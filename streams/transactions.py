"""The worker's transactional producer, and what each error it reports means.

librdkafka sorts transaction errors into three kinds, and the loop answers each one way:

* **abortable** (`txn_requires_abort`), **retriable**, or produce()'s `_STATE` (a failed
  background send already made the transaction abortable): abort, drop the staged state,
  rewind the consumer to the batch's first offsets, decide the batch again. Nothing of
  an aborted transaction is visible to read_committed readers, so nothing is doubled;
  the batch is consumed again, so nothing is lost.
* **fatal**, fencing included: the producer instance is unusable. Fencing is not always
  another instance of this worker: with Kafka 4 a transaction the coordinator aborted for
  outliving `transaction.timeout.ms` (a broker lost under it, a paused process) bumps the
  producer epoch, and the producer then reports itself fenced. So the worker replaces the
  producer — `init_transactions` with the same transactional id completes or aborts what
  the old instance left — and, since the last transaction may or may not have landed
  (a commit interrupted), reloads its partitions' state from the changelog before it
  decides anything more (streams/assignment.py `reload`). This is safe against a real
  second instance too: every changelog write rides with group offsets, which the group
  refuses from a member it replaced (FENCED_INSTANCE_ID; the consumer is then renewed,
  a bounded number of times, streams/processor.py `_renew_consumer`). Replacements that go
  on for longer than a broker outage may last (`budget_s`) without one commit between them
  stop the worker (`ProducerFailing`): while a broker is away, each new producer's first
  transaction can outlive `transaction.timeout.ms` and be fenced again, every few seconds,
  and that must not count against the worker (a count of replacements did: ten in five
  minutes stopped both workers during one broker restart on a loaded machine).

A third: `send_offsets_to_transaction` may never return, whatever its timeout, when the
group coordinator it had cached is lost (librdkafka issues #5456 and #5511: the coordinator
request's deadline is never checked, and a broker gone from the metadata never re-triggers
the lookup). Both workers hung there for good after a broker was killed
(tests/integration/test_broker_loss.py). So that call runs on a thread of its own with a
deadline (`send_offsets`); past it the producer counts as failed and is replaced, which fences
the stuck instance: its transaction is aborted by the new instance's init_transactions, and
whatever it sends later carries the old epoch, which the brokers refuse.

Two more facts of librdkafka 2.16 against Kafka 4.1 shape the code (both shown by
tests/integration/test_transaction_abort.py):
* an abort issued while the transaction's first AddPartitionsToTxn is still in flight
  can end in a fatal INVALID_TXN_STATE (librdkafka issue #4849); flushing before aborting
  lets the registration finish first, and a new producer covers what remains;
* delivery reports of a transaction's records are served inside flush() (which the loop calls
  before it commits) or else inside commit_transaction, so the offsets of this worker's own
  changelog records are known when the commit returns.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer

from foundation.consuming import is_transient
from foundation.producing import flush

log = logging.getLogger(__name__)

ABORT_FLUSH_S_MAX = 5.0
# How long past its own timeout a coordinator call may run before the producer counts as stuck:
# librdkafka applies the timeout on its own threads, so a call that honours it may return a
# little late; 2 s past it the call is taken as one librdkafka will not answer (in the soaks,
# such calls waited on a coordinator that had moved), and the producer is replaced.
STUCK_CALL_GRACE_S = 2.0
RETRY_BACKOFF_S = 0.1
RETRY_BACKOFF_S_MAX = 2.0

_FENCED_CODES = frozenset(
    {
        KafkaError._FENCED,
        KafkaError.PRODUCER_FENCED,
        KafkaError.INVALID_PRODUCER_EPOCH,
        KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
        KafkaError.FENCED_INSTANCE_ID,
    }
)


class CommitOutcomeUnknown(RuntimeError):
    """A commit failed in a way that does not say whether it landed."""


class ProducerStuck(RuntimeError):
    """A producer call outlived its timeout by STUCK_CALL_GRACE_S: the producer is replaced."""


class ProducerFailing(RuntimeError):
    """The producer keeps failing fatally: stop, writing nothing."""


def is_fenced(error: KafkaError) -> bool:
    return error.code() in _FENCED_CODES


def is_abortable(error: KafkaError) -> bool:
    """The transaction can be aborted and the batch decided again with the same producer."""
    if error.fatal() or is_fenced(error):
        return False
    return bool(error.txn_requires_abort()) or error.code() == KafkaError._STATE or is_transient(error)


class FailureStreak:
    """How long the producer has been failing without a commit in between: longer than
    `budget_s` (what a broker outage may last) stops the worker."""

    def __init__(self, budget_s: float) -> None:
        self.budget_s = budget_s
        self.since_s: float | None = None
        self.failures = 0

    def failed(self, now_s: float, reason: str) -> None:
        if self.since_s is None:
            self.since_s = now_s
        self.failures += 1
        if now_s - self.since_s > self.budget_s:
            raise ProducerFailing(
                f"the transactional producer failed {self.failures} times over {now_s - self.since_s:.0f}s "
                f"without committing (more than {self.budget_s:.0f}s); last: {reason}"
            )

    def committed(self) -> None:
        self.since_s, self.failures = None, 0


class TransactionalProducer:
    """One producer at a time for this worker's transactional id."""

    def __init__(self, config: dict[str, Any], *, init_timeout_s: float, budget_s: float) -> None:
        self._config = config
        self._init_timeout_s = init_timeout_s
        self.budget_s = budget_s  # how long a broker or the coordinator may be away
        self.replaced = 0
        self.failing = FailureStreak(budget_s)
        self.producer: Any = self._new()

    def _new(self) -> Any:
        """A producer whose init_transactions has succeeded: that fences any earlier incarnation
        of this worker and completes or aborts its transaction. Each attempt has a producer of
        its own, as each ask of the admin loops has (topologies.admin.fresh_admin): one made
        while the broker was paused can forget every broker and time out forever after it.
        Dropping the one that timed out is safe: it produced nothing, and the next one's
        init_transactions fences it as it fences any other incarnation."""
        producer: Any = None

        def init() -> None:
            nonlocal producer
            # The one that failed is destroyed first (its last reference), so that it cannot ask
            # for a producer id again after the new one has its own.
            producer = None
            producer = Producer(self._config)
            producer.init_transactions(self._init_timeout_s)

        self._retrying("init_transactions", init)
        return producer

    def replace(self, reason: str) -> None:
        """The producer failed fatally (or was fenced): carry on with a new one."""
        self.failing.failed(time.monotonic(), reason)
        self.replaced += 1
        log.error("the transactional producer failed (%s); replacing it (%d so far)", reason, self.replaced)
        self._serve_last_words(self.producer)
        self.producer = self._new()

    @staticmethod
    def _serve_last_words(failed: Any) -> None:
        """librdkafka's own account of a failure (its TXNERR and FATAL lines: fenced, epoch
        bumped, coordinator lost) waits in the instance's queue until it is polled; the worker
        meets it as produce()'s bare "Local: Fatal error". Polled once here, so the log says
        why; the poll then raises the fatal error itself. This also serves the instance's last
        delivery reports: the caller forgets what it staged after the replacement, not before."""
        try:
            failed.poll(0)
        except KafkaException as exception:
            log.error("librdkafka's reason: %s", exception.args[0])

    def begin(self) -> None:
        self.producer.begin_transaction()

    def abort(self, timeout_s: float) -> None:
        """Abort the open transaction. Records still queued are flushed first, so that the
        partition registration they started has finished (see the module's note)."""
        flush(self.producer, ABORT_FLUSH_S_MAX)  # a fenced producer raises KafkaException, as abort does
        self._retrying("abort_transaction", lambda: self.producer.abort_transaction(timeout_s))

    def send_offsets(self, offsets: list[Any], group_metadata: Any, timeout_s: float) -> OffsetsInFlight:
        """send_offsets_to_transaction, started on a thread of its own with a deadline (see the
        module's note); the caller goes on producing the transaction's records meanwhile and
        waits for the call (`OffsetsInFlight.wait`) before it commits or aborts."""
        return OffsetsInFlight(self.producer, offsets, group_metadata, timeout_s)

    def commit(self, timeout_s: float) -> None:
        """Commit, retrying what librdkafka says may be retried. An abortable error is
        raised as it is (the caller aborts); anything else as CommitOutcomeUnknown."""
        try:
            self._retrying("commit_transaction", lambda: self.producer.commit_transaction(timeout_s))
            self.failing.committed()
        except KafkaException as exception:
            error: KafkaError = exception.args[0]
            if error.txn_requires_abort() and not error.fatal() and not is_fenced(error):
                raise
            raise CommitOutcomeUnknown(f"commit_transaction failed: {error}") from exception

    def _retrying(self, name: str, call: Callable[[], None]) -> None:
        """Call until it succeeds, while librdkafka says the error is retriable, for
        `budget_s` at most."""
        deadline = time.monotonic() + self.budget_s
        backoff_s = RETRY_BACKOFF_S
        while True:
            try:
                call()
                return
            except KafkaException as exception:
                error: KafkaError = exception.args[0]
                if not error.retriable() or time.monotonic() + backoff_s > deadline:
                    raise
                log.warning("%s: %s (retrying)", name, error)
                time.sleep(backoff_s)
                backoff_s = min(backoff_s * 2, RETRY_BACKOFF_S_MAX)


class OffsetsInFlight:
    """One send_offsets_to_transaction call, running on a thread of its own while the loop decides
    and produces the transaction's records (librdkafka takes produce() calls during it: the
    transaction stays open). Its two round trips to the coordinators (AddOffsetsToTxn, then
    TxnOffsetCommit) so overlap the deciding instead of following it.

    `wait` raises the call's own error as it is; a call still running STUCK_CALL_GRACE_S past
    `timeout_s` raises ProducerStuck and is left behind (a daemon thread: it holds no lock of
    ours and ends when librdkafka answers it, with the fenced epoch's refusal). No other
    transactional call may start before `wait` returns (librdkafka refuses concurrent ones)."""

    def __init__(self, producer: Any, offsets: list[Any], group_metadata: Any, timeout_s: float) -> None:
        self._timeout_s = timeout_s
        self._deadline_s = time.monotonic() + timeout_s + STUCK_CALL_GRACE_S
        self._outcome: list[BaseException | None] = []
        self._caller = threading.Thread(
            target=self._call, args=(producer, offsets, group_metadata), name="send-offsets", daemon=True
        )
        self._caller.start()

    def _call(self, producer: Any, offsets: list[Any], group_metadata: Any) -> None:
        try:
            producer.send_offsets_to_transaction(offsets, group_metadata, self._timeout_s)
            self._outcome.append(None)
        except BaseException as exception:  # noqa: BLE001  (handed to the waiting thread, raised there)
            # Without its traceback: this frame holds the producer, and the error outlives the
            # call (the loop holds it while a failed producer is replaced and its partitions
            # reloaded, which can take long on a busy broker; test_worker_faults' fenced worker).
            self._outcome.append(exception.with_traceback(None))

    def wait(self) -> None:
        """Until the call returns (its error raised), or its deadline passes (ProducerStuck)."""
        self._caller.join(max(0.0, self._deadline_s - time.monotonic()))
        if not self._outcome:
            raise ProducerStuck(
                f"send_offsets_to_transaction did not return within {self._timeout_s + STUCK_CALL_GRACE_S:.0f}s "
                f"(its timeout is {self._timeout_s:.0f}s; librdkafka issues #5456, #5511)"
            )
        if self._outcome[0] is not None:
            raise self._outcome[0]
