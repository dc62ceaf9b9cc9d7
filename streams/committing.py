"""The end of one transaction, on a thread of its own, while the loop decides the next batch.

The loop (streams/processor.py) begins a transaction, starts the offsets' call
(streams/transactions.py `send_offsets`) and hands librdkafka the batch's records; what
remains is waiting: the records flushed (the produce round trips with acks=all), the
offsets' call returned, then `commit_transaction`. `Committing` does that waiting here,
and the loop meanwhile takes and decides the next batch on top of this one's staged state
(streams/store.py's sealed level), holding that batch's records back. The loop calls
`wait` before it produces anything more, or changes what it owns, and only a committed
transaction's state reaches RocksDB: if this one fails, the next batch, decided on its
state, is dropped with it and both are consumed again.

Nothing here decides what a failure means; it only reports it (`failure`, `unknown`),
as the loop's own calls would have raised it.
"""

from __future__ import annotations

import threading
import time

from confluent_kafka import KafkaError, KafkaException

from foundation.producing import flush
from streams.transactions import CommitOutcomeUnknown, OffsetsInFlight, ProducerStuck, TransactionalProducer


class Committing:
    """One transaction's flush, offsets' wait and commit, started at construction."""

    def __init__(
        self, transactions: TransactionalProducer, in_flight: OffsetsInFlight | None, timeout_s: float
    ) -> None:
        self.in_flight = in_flight  # still to be waited for after a failure, before an abort
        self.failure: KafkaError | None = None  # the transaction must be aborted (or its producer replaced)
        self.unknown: str | None = None  # its fate is unknown, or its producer hangs: replace the producer
        self.sending_s = time.monotonic()
        self.committing_s = 0.0
        self.committed_s = 0.0
        self._crash: BaseException | None = None
        self._thread = threading.Thread(
            target=self._finish, args=(transactions, timeout_s), name="committing", daemon=True
        )
        self._thread.start()

    def _finish(self, transactions: TransactionalProducer, timeout_s: float) -> None:
        # Errors are kept as values, never as exceptions held past their handler (see the
        # loop's note on confluent-kafka's leaked references).
        try:
            # As long as the commit may take; flush is not a transactional call, so it runs
            # beside the offsets' call.
            flush(transactions.producer, timeout_s)
            if self.in_flight is not None:
                pending, self.in_flight = self.in_flight, None
                pending.wait()  # the commit may only follow it (and needs the offsets in the transaction)
            self.committing_s = time.monotonic()
            transactions.commit(timeout_s)
            self.committed_s = time.monotonic()
        except KafkaException as exception:
            self.failure = exception.args[0]
        except (CommitOutcomeUnknown, ProducerStuck) as stuck:
            self.unknown = str(stuck)
        except BaseException as crash:  # noqa: BLE001  (raised again on the loop's thread by `wait`)
            self._crash = crash

    def wait(self) -> bool:
        """Until the transaction's end is known; True if it committed. The offsets' call has
        its own deadline, and the commit its retry budget, so this returns."""
        self._thread.join()
        if self._crash is not None:
            crash, self._crash = self._crash, None
            raise crash
        return self.failure is None and self.unknown is None

    @property
    def phases(self) -> tuple[float, float]:
        """Seconds sending (records flushed, offsets' call awaited) and committing."""
        return self.committing_s - self.sending_s, self.committed_s - self.committing_s
