"""The .hex form of a golden vector: a comment, the length, then 32 bytes of hex per line."""

from __future__ import annotations

from pathlib import Path


def to_hex_file(comment: str, data: bytes) -> str:
    h = data.hex()
    lines = [h[i : i + 64] for i in range(0, len(h), 64)]
    return f"# {comment}\n# {len(data)} bytes\n" + "\n".join(lines) + "\n"


def read_hex_file(path: Path) -> bytes:
    return bytes.fromhex("".join(line for line in path.read_text().splitlines() if not line.startswith("#")))
