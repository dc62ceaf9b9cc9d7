"""The Avro contract: the .avsc files under avro/ (see avro/README.md), shipped with the
package so that an installed streamwallet finds them."""

from pathlib import Path

AVRO_ROOT = Path(__file__).resolve().parent / "avro"
