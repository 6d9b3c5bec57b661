"""Trục protocol: pure value types, canonical CBOR, envelopes, state machines.

No I/O here: no sockets, files, clocks or randomness; time and random bytes
are arguments.
"""
