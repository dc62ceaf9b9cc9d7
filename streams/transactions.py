"""The worker's transactional producer, and what each error it reports means.

librdkafka sorts transaction errors into three kinds, and the loop answers each one way:

* **abortable** (`txn_requires_abort`), **retriable**, or produce()'s `_STATE` (a failed
  background send already made the transaction abortable): abort, drop the staged state,
  rewind the consumer to the batch's first offsets, decide the batch again. Nothing of
  an aborted transaction is visible to read_committed readers, so nothing is doubled;
  the batch is consumed again, so nothing is lost.
* **fenced** (another instance of this worker, or the group, took over): this worker is
  a zombie. It must stop without committing, applying or checkpointing anything:
  `WorkerFenced`.
* **fatal** otherwise: the producer instance is unusable. If the transaction's outcome is
  known — it never reached commit — a new producer with the same transactional id
  (`init_transactions` fences the old instance and aborts its transaction) carries on
  after the usual rewind. If it failed during commit, the outcome is unknown (it may have
  landed): `CommitOutcomeUnknown`, and the worker leaves without applying or
  checkpointing; its next start restores whatever did land.

Two facts of librdkafka 2.16 against Kafka 4.1 shape the code (both shown by
tests/integration/test_transaction_abort.py):
* an abort issued while the transaction's first AddPartitionsToTxn is still in flight
  can end in a fatal INVALID_TXN_STATE (librdkafka issue #4849); flushing before aborting
  lets the registration finish first, and a new producer covers what remains;
* delivery reports of a transaction's records are served inside commit_transaction, so
  the offsets of this worker's own changelog records are known when the commit returns.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer

from foundation.consuming import is_transient

log = logging.getLogger(__name__)

ABORT_FLUSH_S_MAX = 5.0
RETRY_BACKOFF_S = 0.1
RETRY_BACKOFF_S_MAX = 2.0
PRODUCERS_REPLACED_MAX = 20  # per worker life: past this, a fatal error stops the worker

_FENCED_CODES = frozenset(
    {
        KafkaError._FENCED,
        KafkaError.PRODUCER_FENCED,
        KafkaError.INVALID_PRODUCER_EPOCH,
        KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
        KafkaError.FENCED_INSTANCE_ID,
    }
)


class WorkerFenced(RuntimeError):
    """Another instance took this worker's place: stop, writing nothing."""


class CommitOutcomeUnknown(RuntimeError):
    """A commit failed in a way that does not say whether it landed: stop, writing nothing."""


def is_fenced(error: KafkaError) -> bool:
    return error.code() in _FENCED_CODES


def is_abortable(error: KafkaError) -> bool:
    """The transaction can be aborted and the batch decided again with the same producer."""
    return bool(error.txn_requires_abort()) or error.code() == KafkaError._STATE or is_transient(error)


class TransactionalProducer:
    """One producer at a time for this worker's transactional id; a fatal error that is not
    fencing replaces it (bounded)."""

    def __init__(self, config: dict[str, Any], *, init_timeout_s: float, budget_s: float) -> None:
        self._config = config
        self._init_timeout_s = init_timeout_s
        self.budget_s = budget_s  # how long a broker or the coordinator may be away
        self.replaced = 0
        self.producer: Any = self._new()

    def _new(self) -> Any:
        producer = Producer(self._config)
        # Fences an earlier incarnation of this worker and aborts its open transaction.
        self._retrying("init_transactions", lambda: producer.init_transactions(self._init_timeout_s))
        return producer

    def replace(self, reason: KafkaError) -> None:
        """The producer reported a fatal error outside commit: carry on with a new one."""
        if is_fenced(reason):
            raise WorkerFenced(f"fenced: {reason}")
        if self.replaced >= PRODUCERS_REPLACED_MAX:
            raise KafkaException(reason)
        self.replaced += 1
        log.error("the transactional producer failed (%s); replacing it (%d so far)", reason, self.replaced)
        self.producer = self._new()

    def abort(self, timeout_s: float) -> None:
        """Abort the open transaction. Records still queued are flushed first, so that the
        partition registration they started has finished (see the module's note)."""
        self.producer.flush(ABORT_FLUSH_S_MAX)
        self._retrying("abort_transaction", lambda: self.producer.abort_transaction(timeout_s))

    def commit(self, timeout_s: float) -> None:
        """Commit, retrying what librdkafka says may be retried. An abortable error is
        raised as it is (the caller aborts); a fatal one as CommitOutcomeUnknown."""
        try:
            self._retrying("commit_transaction", lambda: self.producer.commit_transaction(timeout_s))
        except KafkaException as exception:
            error: KafkaError = exception.args[0]
            if is_fenced(error):
                raise WorkerFenced(f"fenced at commit: {error}") from exception
            if error.fatal() or not error.txn_requires_abort():
                raise CommitOutcomeUnknown(f"commit_transaction failed: {error}") from exception
            raise

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
