"""How the IPC client describes a local file: small ones inline, larger ones streamed with their size and SHA-256."""

from __future__ import annotations

import hashlib
from pathlib import Path

from cli.client import INLINE_FILE_BYTES, file_entry


def test_a_small_file_travels_inline(tmp_path: Path) -> None:
    path = tmp_path / "cong-van.txt"
    path.write_bytes(b"Kinh gui")
    entry, stream = file_entry(path)
    assert stream is None and entry == {"name": "cong-van.txt", "mime": "text/plain", "data": b"Kinh gui"}


def test_a_larger_file_declares_its_size_and_hash_and_is_streamed(tmp_path: Path) -> None:
    path = tmp_path / "phu-luc.bin"
    data = bytes(range(256)) * (INLINE_FILE_BYTES // 256 * 5 + 3)  # several read chunks, the last one short
    path.write_bytes(data)
    entry, stream = file_entry(path, mime="application/pdf")
    assert stream == path
    sha256 = hashlib.sha256(data).hexdigest()
    assert entry == {"name": "phu-luc.bin", "mime": "application/pdf", "size": len(data), "sha256": sha256}
