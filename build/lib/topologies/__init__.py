"""Every Kafka topic of streamwallet, declared once: the app, the tests, the CLI and
the Helm chart all read these specs."""

from topologies.partitioning import partition_for
from topologies.topics import TopicSpec, Topology

__all__ = ["TopicSpec", "Topology", "partition_for"]
