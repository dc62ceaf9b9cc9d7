"""When the worker gives up on replacing its fenced consumer (streams/renewals.py).

In a fresh-clone CI run of test_broker_loss a worker's consumer was fenced three times in
45 s, each time right after its own session had run out (librdkafka #3437), and the old rule,
five renewals within five minutes whatever their cause, would have stopped it at the fifth:
a rolling restart or a longer outage does that. Fences after a lost session no longer count;
fences of a consumer that held its partitions (another instance with this worker id) do."""

from __future__ import annotations

import pytest

from streams.renewals import ConsumerRenewals, WorkerFenced


def test_fences_after_a_lost_session_are_borne_however_many() -> None:
    renewals = ConsumerRenewals("worker-1", limit=5, window_s=300.0)
    for second in range(0, 300, 15):  # 20 fences in 5 minutes, each after the session ran out
        renewals.renewing(float(second), session_lost=True, reason="fenced")
    assert renewals.after_lost_session == 20


def test_fences_while_the_partitions_were_held_stop_the_worker_past_the_limit() -> None:
    renewals = ConsumerRenewals("worker-1", limit=5, window_s=300.0)
    for second in range(5):
        renewals.renewing(float(second * 10), session_lost=False, reason="fenced")
    with pytest.raises(WorkerFenced, match=r"6 times within 300s while it held its partitions .*worker id worker-1"):
        renewals.renewing(60.0, session_lost=False, reason="fenced")


def test_only_the_fences_within_the_window_count() -> None:
    renewals = ConsumerRenewals("worker-1", limit=2, window_s=100.0)
    renewals.renewing(0.0, session_lost=False, reason="fenced")
    renewals.renewing(50.0, session_lost=False, reason="fenced")
    renewals.renewing(101.0, session_lost=False, reason="fenced")  # the first has left the window
    with pytest.raises(WorkerFenced):
        renewals.renewing(120.0, session_lost=False, reason="fenced")


def test_fences_after_a_lost_session_do_not_hide_a_twin() -> None:
    renewals = ConsumerRenewals("worker-1", limit=2, window_s=300.0)
    for second in range(0, 60, 5):
        renewals.renewing(float(second), session_lost=True, reason="session ran out")
    renewals.renewing(61.0, session_lost=False, reason="fenced")
    renewals.renewing(62.0, session_lost=False, reason="fenced")
    with pytest.raises(WorkerFenced):
        renewals.renewing(63.0, session_lost=False, reason="fenced")
