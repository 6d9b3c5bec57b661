"""The share of the workload that agencies' existing software sends as edXML, as different producers write it.

A document the workload marks with a producer style enters its sender's
node as an edXML package (``edxml.submit``) instead of a Trục submit, and
every status its recipients (and its sender, for 13) send about it goes in
as a status package. The styles are the quirks real producers disagree on
(../shared/EDXML.md), written over the exact VNPT form:

* ``vnpt-zip``: VNPT's library, every attachment in its one-file zip;
* ``vnpt-raw``: the same with raw attachments;
* ``lgsp``: another namespace prefix (``ns2:``) and a UUID DocumentId;
* ``dotnet``: CRLF line ends and ``Business`` for ``Bussiness``.

At the end the verdict exports each such document at each recipient and
compares it with what went in (:func:`protocol.edxml.carry.differences`).
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable

from protocol.agency import AgencyCode
from protocol.edxml import (
    EdocFields,
    FileSpec,
    Package,
    ResponseFor,
    StatusFields,
    ZipMode,
    build_edoc,
    build_status,
    read_package,
    write_bytes,
)
from protocol.edxml.carry import differences
from protocol.ids import Digest
from protocol.status import StatusCode

from .driver import Driver
from .workload import DocPlan

STYLES = ("vnpt-zip", "vnpt-raw", "lgsp", "dotnet")
SHARE = 0.25  # of the documents that are not broadcasts
NOTATION = "SIM"


AT_MS = 1_790_000_000_000  # the packages' own times: fixed, so a virtual run repeats to the byte


class EdxmlTraffic:
    """The run's edXML share: which documents, the packages that went in, and the comparison at the end."""

    def __init__(self, plans: list[DocPlan], *, seed: int, names: dict[str, str]) -> None:
        self.seed = seed
        self.styles = choose_styles(plans, seed)
        self.names = names
        self.sent: dict[Digest, tuple[str, Package]] = {}  # document -> (style, the package as its sender's software made it)

    def _name(self, code: str) -> str:
        return self.names.get(code, "")

    def package(self, plan: DocPlan, data: bytes) -> bytes | None:
        """The package ``plan`` goes as, or None when it goes as a plain submit."""
        style = self.styles.get(plan.index)
        if style is None:
            return None
        return edoc_package(plan, style, data, seed=self.seed, names=self._name, at_ms=AT_MS + int(plan.at_s * 1000))

    def submitted(self, doc: Digest, plan: DocPlan, package: bytes) -> None:
        self.sent[doc] = (self.styles[plan.index], read_package(package)[0])

    def status(
        self, doc: Digest, author: AgencyCode, to: AgencyCode, code: StatusCode, *, note: str, now_s: float
    ) -> bytes | None:
        """The status package ``author`` sends about ``doc``, or None when ``doc`` did not go as edXML."""
        if doc not in self.sent:
            return None
        style, sent = self.sent[doc]
        at = AT_MS + int(now_s * 1000)
        return status_package(sent, author, to, code, note=note, at_ms=at, style=style, names=self._name)

    async def compare(self, driver: Driver, delivered: list[tuple[Digest, AgencyCode]]) -> dict[str, list[str]]:
        """Each edXML document exported at each recipient that holds it, against what went in: "doc->recipient" -> differences."""
        out = {}
        for doc, r in delivered:
            if doc not in self.sent:
                continue
            sent = self.sent[doc][1]
            assert sent.edoc is not None
            received, _ = read_package(await driver.export_edxml(doc, r))
            out[f"{doc.short()}->{r.short()}"] = differences(sent, received, [sent.edoc.sender.organ_id, str(r)])
        return out


def choose_styles(plans: list[DocPlan], seed: int) -> dict[int, str]:
    """Which plans go as edXML, and in which style: drawn from their own RNG, so the rest of a seeded run is unchanged."""
    rng = random.Random(f"{seed}-edxml")
    chosen = {}
    for p in plans:
        roll, style = rng.random(), rng.choice(STYLES)
        if not p.broadcast and roll < SHARE:
            chosen[p.index] = style
    return chosen


def document_id(plan: DocPlan, style: str, seed: int) -> str:
    if style == "lgsp":
        return str(uuid.UUID(bytes=random.Random(f"{seed}-edxml-id-{plan.index}").randbytes(16), version=4))
    return f"{plan.sender},{_date(plan)},{plan.index}/{NOTATION}"


def _date(plan: DocPlan) -> str:
    return time.strftime("%Y/%m/%d", time.gmtime(1_790_000_000 + int(plan.at_s)))


def edoc_package(plan: DocPlan, style: str, data: bytes, *, seed: int, names: Callable[[str], str], at_ms: int) -> bytes:
    """The package the sender's software makes for ``plan``, its attachment ``data``, in ``style``."""
    fields = EdocFields(
        sender=str(plan.sender),
        recipients=tuple(str(r) for r in plan.recipients),
        subject=f"Văn bản mô phỏng số {plan.index}",
        number=str(plan.index),
        notation=NOTATION,
        type_name="Công văn",
        date=_date(plan).replace("/", "-"),
        signer="Nguyễn Văn A",
        document_id=document_id(plan, style, seed),
    )
    package = build_edoc(fields, names=names, files=[FileSpec("van-ban.pdf", "application/pdf")])
    zip_mode = ZipMode.ZIP if style == "vnpt-zip" else ZipMode.RAW
    rng = random.Random(f"{seed}-edxml-zip-{plan.index}")
    return _quirk(write_bytes(package, [data], zip=zip_mode, at_ms=at_ms, rng=rng.randbytes), style)


def status_package(
    sent: Package,
    author: AgencyCode,
    to: AgencyCode,
    code: StatusCode,
    *,
    note: str,
    at_ms: int,
    style: str,
    names: Callable[[str], str],
) -> bytes:
    """``author``'s status package to ``to`` about the edoc ``sent``: a recipient's to the sender, or the sender's 13."""
    edoc = sent.edoc
    assert edoc is not None
    number = f"{edoc.code_number}/{edoc.code_notation}"
    fields = StatusFields(
        str(author), ResponseFor(str(to), number, edoc.promulgation_date, edoc.document_id), int(code), at_ms, note
    )
    return _quirk(write_bytes(build_status(fields, names=names), [], zip=ZipMode.RAW), style)


def _quirk(data: bytes, style: str) -> bytes:
    if style == "lgsp":
        return data.replace(b"<edXML:", b"<ns2:").replace(b"</edXML:", b"</ns2:").replace(b"xmlns:edXML=", b"xmlns:ns2=")
    if style == "dotnet":
        data = data.replace(b"<edXML:Bussiness>", b"<edXML:Business>").replace(b"</edXML:Bussiness>", b"</edXML:Business>")
        return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    return data
