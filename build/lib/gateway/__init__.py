"""The HTTP gateway: translates HTTP requests into commands, produces them to Kafka and
waits for their results. No domain logic lives here."""
