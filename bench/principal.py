"""Who the benchmarks act as: one principal with every role, the owner of every account a
benchmark opens (the shard authorizes each command; the benchmarks measure the ledger,
not who may use it)."""

from __future__ import annotations

from ledger.principals import Principal, Role

BENCH_PRINCIPAL = Principal(principal_id="streamwallet-bench", roles=frozenset(Role))
