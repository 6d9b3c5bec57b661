"""SHA-256 of an attachment while it is read: the one read loop that sealing and the IPC client share.

Its own module (no crypto library) so that the IPC client (cli/client.py),
which declares a streamed file's size and hash, imports only hashlib.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import BinaryIO

from protocol.ids import Digest

READ_CHUNK_BYTES = 1 << 20


class HashingReader:
    """The chunks of an open binary file, counted and hashed as they are read.

    ``size`` and ``digest`` cover what has been read so far; after the loop,
    the whole file.
    """

    def __init__(self, f: BinaryIO, chunk_bytes: int = READ_CHUNK_BYTES) -> None:
        self._f = f
        self._chunk_bytes = chunk_bytes
        self._hash = hashlib.sha256()
        self.size = 0

    def __iter__(self) -> Iterator[bytes]:
        while chunk := self._f.read(self._chunk_bytes):
            self._hash.update(chunk)
            self.size += len(chunk)
            yield chunk

    @property
    def digest(self) -> Digest:
        return Digest(self._hash.digest())


def hash_file(f: BinaryIO, chunk_bytes: int = READ_CHUNK_BYTES) -> tuple[int, Digest]:
    """Size and SHA-256 of the rest of ``f``."""
    reader = HashingReader(f, chunk_bytes)
    for _ in reader:
        pass
    return reader.size, reader.digest
