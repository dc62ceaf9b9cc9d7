"""The ledger's pure domain core: money, accounts, commands, events, error codes and the
shard state machine. Standard library only: no Kafka, Faust, RocksDB, ClickHouse or I/O.
Time and ids come in as arguments; storage is handed in through the `Store` port."""
