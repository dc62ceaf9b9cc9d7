"""The query side: sinks that consume the events topic into ClickHouse, the views
analysts and the API read, and the query service that owns the embedded store."""
