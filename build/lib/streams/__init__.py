"""The command side: the Faust app that hosts the ledger workers, the exactly-once
transactional loop that runs the shards, and their RocksDB state."""
