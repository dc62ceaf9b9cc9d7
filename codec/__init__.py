"""Avro encoding of every message and stored record, in Avro single-object encoding.

from codec import Codec
codec = Codec()                 # loads schemas/avro/ (current and released versions)
data = codec.encode(deposit)    # b"\\xc3\\x01" + 8-byte fingerprint + Avro binary
codec.decode(data)              # -> Deposit(...), or raises DecodeError
"""

from codec.avro import Codec, DecodeError, DecodeErrorCode
from codec.writer import EncodeError

__all__ = ["Codec", "DecodeError", "DecodeErrorCode", "EncodeError"]
