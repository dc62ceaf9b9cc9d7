"""How often the worker may replace a consumer the group fenced before it stops.

A consumer is fenced for one of two reasons, and the order of its callbacks tells which:

- **Its own session ran out** (a coordinator moved, a broker was frozen or restarted): the
  consumer is told its assignment is lost (`on_lost`) and rejoins, and with static membership
  the rejoin is often refused as if another instance held its `group.instance.id`
  (librdkafka #3437). That is broker trouble: the worker rides it out with a new consumer,
  however often it comes (a rolling restart, a long outage with many faults). In a fresh-clone
  CI run of `test_broker_loss.py` a worker met it three times in 45 s.
- **Another instance with this worker id joined**: the consumer is fenced while it holds its
  assignment, with no `on_lost` first (seen with two consumers of one `group.instance.id`).
  The two would take the partitions from each other forever, each fencing the other's
  producer too; more than `limit` such fences within `window_s` stop the worker
  (WorkerFenced), saying why.
"""

from __future__ import annotations

RENEWALS_MAX = 5
RENEWALS_WINDOW_S = 300.0


class WorkerFenced(RuntimeError):
    """Another instance took this worker's place in the group: stop, writing nothing."""


class ConsumerRenewals:
    """The fences that point to a second instance, within the window."""

    def __init__(self, worker_id: str, *, limit: int = RENEWALS_MAX, window_s: float = RENEWALS_WINDOW_S) -> None:
        self.worker_id = worker_id
        self.limit = limit
        self.window_s = window_s
        self._counted: list[float] = []  # when each fence that counts came
        self.after_lost_session = 0  # fences that followed the consumer's own lost session

    def renewing(self, now_s: float, *, session_lost: bool, reason: str) -> None:
        """One consumer is about to be replaced: raises WorkerFenced when this fence is one
        more than `limit` pointing to another instance within the window."""
        if session_lost:
            self.after_lost_session += 1
            return
        self._counted = [moment for moment in self._counted if now_s - moment < self.window_s]
        if len(self._counted) >= self.limit:
            raise WorkerFenced(
                f"the group fenced this worker's consumer {len(self._counted) + 1} times within "
                f"{self.window_s:.0f}s while it held its partitions (is another instance running with worker "
                f"id {self.worker_id}?); last: {reason}"
            )
        self._counted.append(now_s)
