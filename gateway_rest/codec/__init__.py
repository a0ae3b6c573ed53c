"""JSON of the REST contract to JobService messages and back, read from the message descriptors.

One set of rules for every message (``encode``, ``decode``, and ``gateway_rest.openapi`` for the
document's schemas), plus the few shapes where the JSON is not the proto's (``shapes``).
"""

from gateway_rest.codec.decode import decode, decode_query
from gateway_rest.codec.encode import encode, struct_json

__all__ = ["decode", "decode_query", "encode", "struct_json"]
