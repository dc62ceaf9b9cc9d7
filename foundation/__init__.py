"""What every layer above the domain may stand on: the typed settings, and the helpers
for talking to Kafka (client configuration, consuming, producing, end offsets) and to
HTTP services. It imports nothing of the application (streams, sinks, gateway, CLI)."""
