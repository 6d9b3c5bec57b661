"""Zip attachments as a stream: inspect or unwrap on the way in, wrap on the way out.

Reading. The bytes of an attachment arrive in order from inside base64
inside XML: nothing can be sought, so the zip is read front to back from its
local file headers, then its central directory, then the end record (the
layout every zip writer produces). :class:`AttachmentDecoder` decides from
the first local file header:

* not a zip (no ``PK\\x03\\x04``): the bytes go through as they are;
* VNPT's wrapper: the first entry is named ``<uuid>.<ext>`` (the extension
  matching AttachmentName's when that is known), stored or deflated, not
  encrypted: the entry is inflated as it arrives and *its* bytes are
  delivered. A second entry or a central directory that names anything else
  is an error (the bytes delivered so far would be wrong);
* any other zip (.docx, .xlsx, .odt, a zip of several files, a one-file zip
  whose entry is not uuid-shaped): the bytes go through as they are, while
  the same walk checks every entry name (local header and central
  directory) and inflates deflated entries only to count them (zip bomb
  caps), discarding the output.

Both walks refuse encrypted entries, unsafe entry names (absolute, ``..``,
backslash, control characters), inflation past ``Limits.max_inflated_bytes``
or past ``Limits.max_inflate_ratio``, CRC or size mismatches, and truncation.
Entries with a data descriptor (flag bit 3) work: a deflate stream ends
itself, and the descriptor follows. Memory is bounded by one record header
(< 128 KiB) plus one inflate step (``INFLATE_STEP``).

Writing. :func:`zip_one` wraps one file as VNPT's library does: a single
deflated entry ``<uuid>.<ext>`` written in streaming mode, sizes and CRC in a
data descriptor after the data (what ``java.util.zip.ZipOutputStream`` does
for a deflated entry), so the file is read once and never held.

Why one module: reading and writing share the format's structures (local headers, data
descriptors, the central directory, the CRC and size rules); split, each half would declare them again.
"""

from __future__ import annotations

import datetime as _dt
import enum
import re
import struct
import zlib
from collections.abc import Iterable, Iterator

from ..errors import EdxmlUnsafeNameError, EdxmlZipBombError, EdxmlZipError
from .limits import Limits
from .model import EPOCH, UTC7, extension, unsafe_name_reason

ZIP_MAGIC = b"PK\x03\x04"
_CDH = b"PK\x01\x02"
_EOCD = b"PK\x05\x06"
_EOCD64 = b"PK\x06\x06"
_LOC64 = b"PK\x06\x07"
_DD = b"PK\x07\x08"
_DIGSIG = b"PK\x05\x05"
_ARCHIVE_EXTRA = b"PK\x06\x08"
_LFH_FIXED = 30
_CDH_FIXED = 46
INFLATE_STEP = 1 << 20
_U32 = 0xFFFFFFFF

# VNPT names its one entry with a random UUID and the real file's extension.
_HEX = "[0-9a-fA-F]"
_UUID = f"{_HEX}{{8}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{12}}"
WRAPPER_NAME = re.compile(rf"^(?:{_UUID}|{_HEX}{{32}})\.([A-Za-z0-9]{{1,16}})$")


def is_wrapper_name(entry: str, attachment_name: str) -> bool:
    """Whether a zip's only entry looks like VNPT's wrapper of the file called ``attachment_name``.

    The entry must be ``<uuid>.<ext>``; when the attachment's name has an
    extension, ``ext`` must be it (a user's own ``photos.zip`` holding a
    uuid-named ``.jpg`` is kept as the user sent it).
    """
    m = WRAPPER_NAME.match(entry)
    if not m:
        return False
    want = extension(attachment_name)
    return not want or want == m[1].lower()


class _Mode(enum.Enum):
    SNIFF = "sniff"
    RAW = "raw"  # not a zip: bytes pass through
    PASS = "pass"  # a zip kept as is: bytes pass through, structure checked
    UNWRAP = "unwrap"  # VNPT's wrapper: the entry's bytes are delivered


class _St(enum.Enum):
    LFH = "lfh"
    DATA = "data"
    DESCRIPTOR = "descriptor"
    RECORD = "record"  # expecting the next signature
    TRAIL = "trail"  # after the end record
    OPAQUE = "opaque"  # stopped inspecting (an entry whose end cannot be found)


class AttachmentDecoder:
    """Decoded attachment bytes in, the bytes the recipient gets out (see the module doc).

    ``feed`` and ``close`` return the output pieces. After ``close``,
    ``wrapper`` is the unwrapped entry's name ("" if the bytes were passed
    through) and ``warnings`` lists what was tolerated.
    """

    def __init__(self, attachment_name: str, limits: Limits) -> None:
        self._name = attachment_name
        self._limits = limits
        self._mode = _Mode.SNIFF
        self._st = _St.LFH
        self._buf = bytearray()
        self.wrapper = ""
        self.warnings: list[str] = []
        self._entries = 0
        self._cd_entries = 0
        self._inflated_total = 0
        self._compressed_total = 0
        # current entry
        self._method = 0
        self._flags = 0
        self._zip64 = False
        self._crc_expected = 0
        self._csize: int | None = None
        self._usize = 0
        self._left = 0
        self._crc = 0
        self._out_size = 0
        self._consumed = 0
        self._inflater: zlib._Decompress | None = None
        self._trailing = 0
        self._header_len = 0

    # --- public ------------------------------------------------------------------

    def feed(self, data: bytes) -> list[bytes]:
        out: list[bytes] = []
        if not data:
            return out
        if self._mode is _Mode.RAW:
            out.append(data)
            return out
        if self._mode is _Mode.SNIFF:
            self._buf += data
            if len(self._buf) < 4:
                return out
            if bytes(self._buf[:4]) != ZIP_MAGIC:
                self._mode = _Mode.RAW
                out.append(bytes(self._buf))
                self._buf = bytearray()
                return out
            header = self._try_lfh()
            if header is None:
                return out  # wait for the whole first local header to decide
            entry_name, usable = header
            if usable and is_wrapper_name(entry_name, self._name):
                self._mode = _Mode.UNWRAP
                self.wrapper = entry_name
            else:
                self._mode = _Mode.PASS
                out.append(bytes(self._buf))  # the header bytes, as they came
            rest = bytes(self._buf[self._header_len :])
            self._buf = bytearray()
            self._begin_entry_data()
            self._walk(rest, out)
            return out
        if self._mode is _Mode.PASS:
            out.append(data)
        self._walk(data, out)
        return out

    def close(self) -> list[bytes]:
        out: list[bytes] = []
        if self._mode is _Mode.SNIFF:
            if len(self._buf) >= 4:  # a zip signature, then nothing whole
                raise EdxmlZipError("the zip ends inside its first header")
            self._mode = _Mode.RAW
            out.append(bytes(self._buf))
            self._buf = bytearray()
            return out
        if self._mode is _Mode.RAW:
            return out
        if self._st is _St.OPAQUE:
            return out
        if self._st is not _St.TRAIL:
            raise EdxmlZipError(f"the zip is truncated (it ends {self._where()})")
        if self._trailing:
            self.warnings.append(f"{self._trailing} bytes after the zip's end record (ignored)")
        if self._mode is _Mode.UNWRAP and self._cd_entries != 1:
            raise EdxmlZipError(f"the wrapper zip's central directory lists {self._cd_entries} entries, expected 1")
        return out

    @property
    def is_zip(self) -> bool:
        return self._mode in (_Mode.PASS, _Mode.UNWRAP)

    # --- the walk ------------------------------------------------------------------

    def _where(self) -> str:
        return {
            _St.LFH: "inside a local file header",
            _St.DATA: f"inside entry {self._entries}'s data",
            _St.DESCRIPTOR: f"inside entry {self._entries}'s data descriptor",
            _St.RECORD: "before its central directory or end record",
        }.get(self._st, "early")

    def _walk(self, data: bytes, out: list[bytes]) -> None:
        view = memoryview(data)
        while True:
            if self._st is _St.DATA:
                if self._buf:
                    # bytes that arrived with the entry's header: they come first
                    view = memoryview(bytes(self._buf) + bytes(view))
                    self._buf = bytearray()
                after = self._entry_data(view, out)
                if after is None:
                    return
                view = after
                continue
            if self._st is _St.OPAQUE:
                return
            if self._st is _St.TRAIL:
                self._trailing += len(view)
                return
            if view:
                self._buf += view
                view = memoryview(b"")
            if not self._step():
                return

    def _step(self) -> bool:
        """Parse one record from the buffer; False when more bytes are needed."""
        b = self._buf
        if self._st is _St.DESCRIPTOR:
            return self._descriptor()
        if self._st is _St.LFH:
            if self._try_lfh() is None:
                return False
            del b[: self._header_len]
            self._begin_entry_data()
            return True
        # RECORD
        if len(b) < 4:
            return False
        sig = bytes(b[:4])
        if sig == ZIP_MAGIC:
            if self._mode is _Mode.UNWRAP:
                raise EdxmlZipError("the wrapper zip holds more than one file")
            self._st = _St.LFH
            return True
        if sig == _CDH:
            if len(b) < _CDH_FIXED:
                return False
            (flags,) = struct.unpack_from("<H", b, 8)
            nlen, mlen, klen = struct.unpack_from("<HHH", b, 28)
            total = _CDH_FIXED + nlen + mlen + klen
            if len(b) < total:
                return False
            name = _decode_name(bytes(b[_CDH_FIXED : _CDH_FIXED + nlen]), flags)
            self._check_entry(name, flags)
            self._cd_entries += 1
            if self._cd_entries > self._limits.max_zip_entries:
                raise EdxmlZipError(f"more than {self._limits.max_zip_entries} entries")
            if self._mode is _Mode.UNWRAP and name != self.wrapper:
                raise EdxmlZipError(f"the wrapper zip's central directory names {name[:80]!r}, not {self.wrapper!r}")
            del b[:total]
            return True
        if sig == _EOCD:
            if len(b) < 22:
                return False
            (clen,) = struct.unpack_from("<H", b, 20)
            if len(b) < 22 + clen:
                return False
            self._trailing = len(b) - 22 - clen
            self._buf = bytearray()
            self._st = _St.TRAIL
            return False
        if sig == _EOCD64:
            if len(b) < 12:
                return False
            (size,) = struct.unpack_from("<Q", b, 4)
            if size > 1 << 16:
                raise EdxmlZipError("a zip64 end record of an implausible size")
            if len(b) < 12 + size:
                return False
            del b[: 12 + size]
            return True
        if sig == _LOC64:
            if len(b) < 20:
                return False
            del b[:20]
            return True
        if sig in (_DIGSIG, _ARCHIVE_EXTRA):
            hdr = 6 if sig == _DIGSIG else 8
            if len(b) < hdr:
                return False
            size = struct.unpack_from("<H" if sig == _DIGSIG else "<I", b, 4)[0]
            if size > 1 << 16:
                raise EdxmlZipError("a zip record of an implausible size")
            if len(b) < hdr + size:
                return False
            del b[: hdr + size]
            return True
        raise EdxmlZipError(f"unexpected bytes {sig.hex()} where a zip record should start")

    def _try_lfh(self) -> tuple[str, bool] | None:
        """Parse the local file header at the start of the buffer; None if incomplete.

        Returns the entry name and whether this entry could be unwrapped.
        """
        b = self._buf
        if len(b) < _LFH_FIXED:
            return None
        if bytes(b[:4]) != ZIP_MAGIC:
            raise EdxmlZipError("a local file header without its signature")
        _ver, flags, method, _t, _d, crc, csize, usize, nlen, xlen = struct.unpack_from("<HHHHHIIIHH", b, 4)
        total = _LFH_FIXED + nlen + xlen
        if len(b) < total:
            return None
        name = _decode_name(bytes(b[_LFH_FIXED : _LFH_FIXED + nlen]), flags)
        self._check_entry(name, flags)
        self._entries += 1
        if self._entries > self._limits.max_zip_entries:
            raise EdxmlZipError(f"more than {self._limits.max_zip_entries} entries")
        extra = bytes(b[_LFH_FIXED + nlen : total])
        zip64 = False
        if csize == _U32 or usize == _U32:
            z = _zip64_extra(extra)
            if z is None:
                raise EdxmlZipError(f"entry {name[:80]!r} has zip64 sizes without a zip64 extra field")
            zip64 = True
            if usize == _U32:
                usize, z = z[0], z[1:]
            if csize == _U32 and z:
                csize = z[0]
        elif _zip64_extra(extra) is not None:
            zip64 = True
        self._header_len = total
        self._flags = flags
        self._method = method
        self._zip64 = zip64
        self._crc_expected = crc
        descriptor = bool(flags & 0x08)
        self._csize = None if descriptor else csize
        self._usize = 0 if descriptor else usize
        usable = method == 8 or (method == 0 and not descriptor)
        return name, usable

    def _check_entry(self, name: str, flags: int) -> None:
        if flags & 0x01 or flags & 0x40:
            raise EdxmlZipError(f"entry {name[:80]!r} is encrypted")
        why = unsafe_name_reason(name, allow_dirs=True)
        if why is not None:
            raise EdxmlUnsafeNameError(f"zip entry {name[:80]!r} has {why}")

    def _begin_entry_data(self) -> None:
        self._crc = 0
        self._out_size = 0
        self._consumed = 0
        self._inflater = None
        descriptor = bool(self._flags & 0x08)
        if self._method == 8:
            self._inflater = zlib.decompressobj(-15)
            self._st = _St.DATA
            self._left = self._csize if self._csize is not None else -1
        elif not descriptor:
            # stored, or a method we do not inflate (kept-as-is zips only): its size is known
            assert self._csize is not None
            self._left = self._csize
            if self._method != 0:
                self._count_inflated(self._usize, self._csize)
            self._st = _St.DATA
        else:
            # A data descriptor after a stored or exotic entry: its end cannot be
            # found without the central directory. Only a kept-as-is zip gets here.
            self.warnings.append(f"entry {self._entries} cannot be inspected in a stream (method {self._method})")
            self._st = _St.OPAQUE
        if self._st is _St.DATA and self._left == 0 and self._inflater is None:
            self._end_entry()

    def _entry_data(self, view: memoryview, out: list[bytes]) -> memoryview | None:
        """Consume entry data from ``view``; return the bytes after the entry's data, None while it goes on."""
        if not view:
            return None
        if self._inflater is None:
            take = min(self._left, len(view))
            part = view[:take]
            self._left -= take
            self._consumed += take
            if self._method == 0:
                self._count_inflated(len(part), self._consumed)
                self._deliver(bytes(part), out)
            if self._left == 0:
                self._end_entry()
                return view[take:]
            return None
        d = self._inflater
        if self._left >= 0:
            take = min(self._left, len(view))
            chunk, rest = view[:take], view[take:]
            self._left -= take
        else:
            chunk, rest = view, memoryview(b"")
        data = bytes(chunk)
        self._consumed += len(data)
        try:
            while data and not d.eof:
                piece = d.decompress(data, INFLATE_STEP)
                data = d.unconsumed_tail
                if piece:
                    self._count_inflated(len(piece), self._consumed - len(data))
                    self._deliver(piece, out)
        except zlib.error as exc:
            raise EdxmlZipError(f"entry {self._entries} does not inflate: {exc}") from None
        if d.eof:
            unused = d.unused_data
            self._consumed -= len(unused)
            if self._left > 0:
                raise EdxmlZipError(f"entry {self._entries}'s deflate data ends before its stated size")
            self._end_entry()
            return memoryview(unused + bytes(rest))
        if self._left == 0:
            raise EdxmlZipError(f"entry {self._entries}'s deflate data does not end at its stated size")
        return None

    def _deliver(self, piece: bytes, out: list[bytes]) -> None:
        self._crc = zlib.crc32(piece, self._crc)
        self._out_size += len(piece)
        if self._mode is _Mode.UNWRAP and self._entries == 1:
            out.append(piece)

    def _count_inflated(self, n: int, compressed_so_far: int) -> None:
        self._inflated_total += n
        lim = self._limits
        if self._inflated_total > lim.max_inflated_bytes:
            raise EdxmlZipBombError(f"inflates past {lim.max_inflated_bytes} bytes")
        compressed = self._compressed_total + max(compressed_so_far, 1)
        if self._inflated_total > lim.ratio_grace_bytes and self._inflated_total > lim.max_inflate_ratio * compressed:
            raise EdxmlZipBombError(f"inflates more than {lim.max_inflate_ratio} times its compressed size")

    def _end_entry(self) -> None:
        self._compressed_total += self._consumed
        if self._flags & 0x08:
            self._st = _St.DESCRIPTOR
        else:
            self._check_sizes(self._crc_expected, self._csize, self._usize)
            self._st = _St.RECORD

    def _check_sizes(self, crc: int, csize: int | None, usize: int) -> None:
        inspected = self._method in (0, 8)
        if inspected and crc != self._crc:
            raise EdxmlZipError(f"entry {self._entries} fails its CRC check")
        if csize is not None and csize != self._consumed:
            raise EdxmlZipError(f"entry {self._entries}'s compressed size does not match")
        if inspected and usize != self._out_size:
            raise EdxmlZipError(f"entry {self._entries}'s size does not match")

    def _descriptor(self) -> bool:
        b = self._buf
        off = 4 if bytes(b[:4]) == _DD else 0
        width = 8 if self._zip64 else 4
        need = off + 4 + 2 * width
        if len(b) < need:
            return False
        crc = struct.unpack_from("<I", b, off)[0]
        fmt = "<QQ" if width == 8 else "<II"
        csize, usize = struct.unpack_from(fmt, b, off + 4)
        self._check_sizes(crc, csize, usize)
        del b[:need]
        self._st = _St.RECORD
        return True


def _decode_name(raw: bytes, flags: int) -> str:
    if flags & 0x800:
        return raw.decode("utf-8", "replace")
    return raw.decode("cp437")


def _zip64_extra(extra: bytes) -> list[int] | None:
    """The 64-bit sizes of a zip64 extended-information field, or None when absent."""
    i = 0
    while i + 4 <= len(extra):
        hid, size = struct.unpack_from("<HH", extra, i)
        if hid == 0x0001:
            body = extra[i + 4 : i + 4 + size]
            return [struct.unpack_from("<Q", body, j)[0] for j in range(0, len(body) - 7, 8)]
        i += 4 + size
    return None


# --- writing ---------------------------------------------------------------------

SAMPLE_BYTES = 256 << 10


def dos_datetime(at_ms: int) -> tuple[int, int]:
    """(time, date) in MS-DOS form for a Unix time in ms, in UTC+7 (the time VNPT's servers keep)."""
    t = (EPOCH + _dt.timedelta(milliseconds=at_ms)).astimezone(UTC7)
    year = min(max(t.year, 1980), 2107)
    return (t.hour << 11) | (t.minute << 5) | (t.second // 2), ((year - 1980) << 9) | (t.month << 5) | t.day


def choose_level(sample: bytes) -> int:
    """Deflate level for a file whose first bytes are ``sample``: 6 (Java's default), or 0 when it does not compress.

    PDFs, images and office files are already compressed; deflating them
    again at level 6 runs at ~55 MB/s for a ~1 % gain. Level 0 still writes a
    valid deflate stream (stored blocks) at memory speed.
    """
    if not sample:
        return 6
    c = zlib.compressobj(1, zlib.DEFLATED, -15)
    packed = len(c.compress(sample)) + len(c.flush())
    return 6 if packed < 0.95 * len(sample) else 0


def zip_one(entry_name: str, chunks: Iterable[bytes], *, at_ms: int, level: int | None = None) -> Iterator[bytes]:
    """A one-entry zip of ``chunks`` as a stream of byte pieces (deflate, data descriptor).

    ``level`` None chooses from the first 256 KiB (:func:`choose_level`).
    Raises ValueError past 4 GiB - 1 (no zip64: Limits keep attachments
    far below).
    """
    name = entry_name.encode("utf-8")
    flags = 0x08 | (0x800 if not entry_name.isascii() else 0)
    dtime, ddate = dos_datetime(at_ms)
    local = struct.pack("<4sHHHHHIIIHH", ZIP_MAGIC, 20, flags, 8, dtime, ddate, 0, 0, 0, len(name), 0) + name
    yield local
    it = iter(chunks)
    head: list[bytes] = []
    if level is None:
        got = 0
        for c in it:
            head.append(c)
            got += len(c)
            if got >= SAMPLE_BYTES:
                break
        level = choose_level(b"".join(head)[:SAMPLE_BYTES])
    comp = zlib.compressobj(level, zlib.DEFLATED, -15)
    crc = 0
    usize = 0
    csize = 0

    def pieces() -> Iterator[bytes]:
        yield from head
        yield from it

    for chunk in pieces():
        if not chunk:
            continue
        crc = zlib.crc32(chunk, crc)
        usize += len(chunk)
        z = comp.compress(chunk)
        if z:
            csize += len(z)
            yield z
    z = comp.flush()
    csize += len(z)
    if z:
        yield z
    if usize > _U32 - 1 or csize > _U32 - 1:
        raise ValueError("an attachment over 4 GiB cannot be zipped without zip64")
    yield struct.pack("<4sIII", _DD, crc, csize, usize)
    cd_offset = len(local) + csize + 16
    central = (
        struct.pack("<4sHHHHHHIIIHHHHHII", _CDH, 20, 20, flags, 8, dtime, ddate, crc, csize, usize, len(name), 0, 0, 0, 0, 0, 0)
        + name
    )
    yield central
    yield struct.pack("<4sHHHHIIH", _EOCD, 0, 0, 1, 1, len(central), cd_offset, 0)
