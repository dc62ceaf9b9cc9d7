"""The shard's flows, one module each; `ledger/shard.py` dispatches every message to one.

A client command enters through `intake` (routing, dedup, validation) and is then
decided by its flow: `account_operations`, `transfers`, `holds`, `reversals`,
`batches`. A flow whose credit side lives on another shard ends in `settlement`
(the settle or refund leg back at the source). `clock` handles ticks, `queries`
the look-up of an earlier command's result.
"""
