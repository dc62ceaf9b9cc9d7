"""SQL for analysts: ClickHouse's HTTP protocol on the query service's port, read-only,
over the embedded store (sinks/sql/endpoint.py; the rules in sinks/sql/policy.py)."""
