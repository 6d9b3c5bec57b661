"""The national SDK's HTTP calls (EDXML.md §7, docs/sdk.md), answered by this node: existing systems change one URL.

Every call: the route is looked up, the caller authenticated
(node/sdk_gate.py: signature, timestamp window, replay, rate), then the call
runs on the node's parts — the edXML gateway for sendEdoc, getEdoc and
statuses, the inbox for the pending list and ``updateStatus(done)``, the
tracking view for getSentEdocList, the signed directory for the agency
lists. A refusal is the SDK's FAIL envelope with its own ErrorCode
(protocol.errors.SdkErrorCode), logged (``sdk.refused``) and counted
(``truc_sdk_refused{reason}``); nothing of a refused call is stored.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from protocol import sdk
from protocol.agency import AgencyCode
from protocol.edxml import Kind, ZipMode
from protocol.errors import (
    AccessDeniedError,
    AgencyCodeError,
    BusyError,
    DecodeError,
    HashMismatchError,
    NotARecipientError,
    NotFoundError,
    SdkErrorCode,
    SdkRequestError,
    ShuttingDownError,
    TooLargeError,
    TrucError,
)
from protocol.ids import Digest
from protocol.multipart import MultipartReader, PartData, PartEnded, PartStarted, boundary_of

from . import sdk_views
from .edxml import max_package_bytes
from .engine import Engine
from .http import Request, Response
from .sdk_gate import SdkGate, System
from .upload import Spool, hashed

MAX_SMALL_BODY = 64 << 10  # every call but sendEdoc carries its parameters in headers
FILE_PART = "file_doc"
JSON = "application/json; charset=utf-8"
HTTP_STATUS = {
    SdkErrorCode.MALFORMED_AUTH: 401,
    SdkErrorCode.UNKNOWN_SYSTEM: 401,
    SdkErrorCode.BAD_SIGNATURE: 401,
    SdkErrorCode.STALE_TIMESTAMP: 401,
    SdkErrorCode.REPLAY: 401,
    SdkErrorCode.FOREIGN_AGENCY: 403,
    SdkErrorCode.RATE_LIMITED: 429,
    SdkErrorCode.TOO_LARGE: 413,
    SdkErrorCode.MALFORMED: 400,
    SdkErrorCode.HASH_MISMATCH: 400,
    SdkErrorCode.UNKNOWN_CALL: 404,
    SdkErrorCode.TIMEOUT: 408,
    SdkErrorCode.BUSY: 503,
    SdkErrorCode.INTERNAL: 500,
}  # the rest (a refused document, an unknown docId, register/deleteAgency) are HTTP 200 with a FAIL envelope
SERVER_REFUSAL = {
    400: SdkErrorCode.MALFORMED,
    408: SdkErrorCode.TIMEOUT,
    413: SdkErrorCode.TOO_LARGE,
    431: SdkErrorCode.TOO_LARGE,
}
JOIN = (
    "membership of the network comes from the signed directory, not from this call: the agency's node operator "
    "runs `truc init` and sends join-request.cbor to the network authority, which signs the new directory "
    "(docs/operations.md, docs/directory.md)"
)

Call = Callable[[Request, System, sdk.SignedCall], Awaitable[Response]]


def page(status: int, why: str) -> Response:
    """The FAIL envelope for what the HTTP server refuses itself (headers too large, too slow, too many connections)."""
    error = SERVER_REFUSAL.get(status, {503: SdkErrorCode.BUSY, 500: SdkErrorCode.INTERNAL}.get(status, SdkErrorCode.MALFORMED))
    return Response(status, sdk.fail(error, why), JSON)


class SdkApi:
    def __init__(self, engine: Engine, gate: SdkGate, spool: Spool) -> None:
        self.e = engine
        self.gate = gate
        self.spool = spool
        self.offset = gate.settings.utc_offset_min
        self.base = gate.settings.base_path
        self.inboxes = sdk_views.Inboxes(engine)
        self._agencies: dict[tuple[str, int], bytes] = {}
        self.calls: dict[str, tuple[tuple[str, ...], Call]] = {
            "sendEdoc": (("POST",), self._send),
            "getReceivedEdocList": (("POST", "GET"), self._received),
            "getEdoc": (("POST", "GET"), self._get),
            "downloadEdoc": (("GET", "POST"), self._download),
            "updateStatus": (("POST", "GET"), self._update),
            "getSentEdocList": (("POST", "GET"), self._sent),
            "countReceiveEdoc": (("GET", "POST"), self._count("edoc")),
            "countReceiveStatus": (("GET", "POST"), self._count("status")),
            "getAgenciesList": (("POST", "GET"), self._agency_list("getAgenciesList")),
            "getAgenciesListQD20": (("POST", "GET"), self._agency_list("getAgenciesListQD20")),
            "getSynchronizeUnit": (("POST", "GET"), self._agency_list("getSynchronizeUnit")),
            "registerAgency": (("POST", "GET"), self._membership),
            "deleteAgency": (("POST", "GET"), self._membership),
        }

    async def handle(self, req: Request) -> Response:
        name = req.path[len(self.base) + 1 :] if req.path.startswith(self.base + "/") else ""
        system: System | None = None
        try:
            found = self.calls.get(name)
            if found is None:
                raise SdkRequestError(
                    SdkErrorCode.UNKNOWN_CALL, f"{req.path[:100]!r} is not a call of this API (base {self.base})"
                )
            methods, call = found
            if req.method not in methods:
                raise SdkRequestError(SdkErrorCode.MALFORMED, f"{name} is called with {' or '.join(methods)}")
            if any(h.startswith(sdk.PREFIX) for h in req.repeated):
                raise SdkRequestError(SdkErrorCode.MALFORMED_AUTH, "an XroadVnpt- header is sent twice")
            system, signed = self.gate.authenticate(req.headers, self.e.clock())
            resp = await call(req, system, signed)
        except SdkRequestError as exc:
            return self._refuse(name, system, exc.error, exc.detail)
        except AccessDeniedError as exc:
            return self._refuse(name, system, SdkErrorCode.FOREIGN_AGENCY, exc.message)
        except (BusyError, ShuttingDownError) as exc:
            return self._refuse(name, system, SdkErrorCode.BUSY, exc.message)
        except TooLargeError as exc:
            return self._refuse(name, system, SdkErrorCode.TOO_LARGE, exc.message)
        except HashMismatchError as exc:
            return self._refuse(name, system, SdkErrorCode.HASH_MISMATCH, exc.message)
        except NotFoundError as exc:
            return self._refuse(name, system, SdkErrorCode.NOT_FOUND, exc.message)
        except TrucError as exc:
            return self._refuse(name, system, SdkErrorCode.REFUSED, f"{exc.code}: {exc.message}")
        self.e.metrics.inc("sdk_calls", call=name)
        return resp

    def _refuse(self, call: str, system: System | None, error: SdkErrorCode, desc: str) -> Response:
        self.e.metrics.inc("sdk_refused", reason=error.reason)
        who = system.system_id if system is not None else ""
        self.e.log.warning(
            "sdk.refused", call=call[:40], system=who, reason=error.reason, error_code=error.value, detail=desc[:300]
        )
        return Response(HTTP_STATUS.get(error, 200), sdk.fail(error, desc), JSON)

    # --- helpers ---------------------------------------------------------------------------

    def _mine(self, system: System, signed: sdk.SignedCall) -> tuple[AgencyCode, ...]:
        """The system's agencies, or the one the call names (``from`` / ``AgencyCode``), which must be one of them."""
        named = signed.get("agencycode") or signed.get("from")
        if not named:
            return system.agencies
        code = _code(named)
        system.require(code)
        return (code,)

    def _doc_id(self, signed: sdk.SignedCall) -> Digest:
        text = signed.get("docid")
        if not text:
            raise SdkRequestError(SdkErrorCode.MALFORMED, "the call needs docId: a docId from getReceivedEdocList or sendEdoc")
        try:
            return Digest.parse(text.strip())
        except DecodeError:
            raise SdkRequestError(SdkErrorCode.NOT_FOUND, f"docId {text!r:.80} is not one this node gave out") from None

    def _find(self, system: System, signed: sdk.SignedCall) -> tuple[Digest, AgencyCode, Digest | None]:
        """(document, the system's agency it is for, the status id when ``docId`` names a status)."""
        ident = self._doc_id(signed)
        mine = self._mine(system, signed)
        if self.e.doc_header(ident) is not None:
            for code in mine:
                if self.e.store.inbox_entry(code, ident) is not None:
                    return ident, code, None
            h = self.e.doc_header(ident)
            assert h is not None
            if any(system.may_act_for(c) for c in (h.sender, *h.to)):
                raise NotARecipientError(f"{h.sender} sent {ident.short()}; getEdoc gives documents received")
            raise AccessDeniedError(f"system {system.system_id} acts for no party to {ident.short()}")
        env = self.e.n.envelope(ident)
        doc = getattr(env.header, "doc", None) if env is not None else None
        if isinstance(doc, Digest):
            for code in mine:
                try:
                    if any(sid == ident for sid, _, _ in self.e.edxml.status_items(doc, code)):
                        return doc, code, ident
                except NotFoundError:
                    continue
            raise AccessDeniedError(f"status {ident.short()} is not addressed to an agency system {system.system_id} acts for")
        raise NotFoundError(f"docId {ident.short()} is not a document or status on this node")

    def _package(self, system: System, signed: sdk.SignedCall) -> tuple[str, list[bytes]]:
        doc, code, sid = self._find(system, signed)
        if sid is not None:
            st = next(s for s in self.e.edxml.status_packages(doc, code) if s.id == sid)
            return f"status-{st.code}-{sid.short()}.edxml", [st.package]
        _, pieces = self.e.edxml.export(doc, code, ZipMode(self.e.config.edxml_zip))
        return f"{doc.short()}.edxml", list(pieces)

    def _pending(self, system: System, signed: sdk.SignedCall, kind: str) -> list[sdk_views.Pending]:
        mine = self._mine(system, signed)
        return self.inboxes.statuses(mine) if kind == "status" else self.inboxes.documents(mine)

    # --- the calls -------------------------------------------------------------------------

    async def _send(self, req: Request, system: System, signed: sdk.SignedCall) -> Response:
        sender = _code(signed.get("from"), "from")
        system.require(sender)
        kind = _kind(signed.get("messagetype", "edoc"))
        to = [_code(c, "to") for c in sdk.json_list(signed.get("to"), "to")]
        expected = signed.get("hash-file")
        boundary = boundary_of(req.headers.get("content-type", ""))
        limit = max_package_bytes(self.e.config.max_document_bytes)

        def require(code: AgencyCode) -> None:
            if code != sender:
                raise AccessDeniedError(f"the package's From is {code}, the call's from is {sender}")

        def check(digest: bytes) -> None:
            if expected and not sdk.hash_matches(expected, digest):
                raise HashMismatchError("hash-file is not the SHA-256 of file_doc (as hex, or the SDK's unpadded hex)")

        chunks = hashed(_file_part(req.chunks(limit), boundary), check)
        done = await self.e.edxml.submit(chunks, self.spool, require, kind)
        if to and kind is Kind.EDOC:
            h = self.e.doc_header(done.doc)
            if h is not None and sorted(h.to) != sorted(to):
                self.e.log.warning("sdk.to_differs", id=done.doc.short(), to=",".join(map(str, to)))
        self.e.log.info("sdk.sent", system=system.system_id, kind=kind.value, id=done.id.short(), duplicate=done.duplicate)
        return _ok(DocId=str(done.id))

    async def _received(self, req: Request, system: System, signed: sdk.SignedCall) -> Response:
        await req.drain(MAX_SMALL_BODY)
        kind = _kind(signed.get("messagetype", "edoc"))
        rows = [sdk_views.row(p, self.offset) for p in self._pending(system, signed, kind.value)]
        return _ok(data=rows)

    async def _get(self, req: Request, system: System, signed: sdk.SignedCall) -> Response:
        await req.drain(MAX_SMALL_BODY)
        _, pieces = self._package(system, signed)
        return _ok(data=base64.b64encode(b"".join(pieces)).decode("ascii"))

    async def _download(self, req: Request, system: System, signed: sdk.SignedCall) -> Response:
        await req.drain(MAX_SMALL_BODY)
        name, pieces = self._package(system, signed)
        return Response(200, pieces, "application/xml", [("Content-Disposition", f'attachment; filename="{name}"')])

    async def _update(self, req: Request, system: System, signed: sdk.SignedCall) -> Response:
        await req.drain(MAX_SMALL_BODY)
        status = signed.get("status").strip().lower()
        if status not in ("done", "fail", "processing"):
            raise SdkRequestError(SdkErrorCode.MALFORMED, f"status {status!r:.20} is not done, fail or processing")
        doc, code, sid = self._find(system, signed)
        if status == "done":
            if sid is None:
                await self.e.submission.ack(code, doc)
            else:
                await self.e.statuses.ack_status(code, sid)
        self.e.log.info("sdk.update_status", system=system.system_id, id=(sid or doc).short(), code=str(code), status=status)
        return _ok()

    async def _sent(self, req: Request, system: System, signed: sdk.SignedCall) -> Response:
        await req.drain(MAX_SMALL_BODY)
        mine = self._mine(system, signed)
        if signed.get("docid"):
            doc = self._doc_id(signed)
            h = self.e.doc_header(doc)
            if h is None:
                raise NotFoundError(f"document {doc.short()}")
            if h.sender not in mine:
                raise AccessDeniedError(
                    f"{doc.short()} was sent by {h.sender}, not by an agency system {system.system_id} acts for"
                )
            docs = [doc]
        else:
            docs = sdk_views.sent_documents(self.e, mine)
        return _ok(data=[r for d in docs for r in sdk_views.sent_rows(self.e, d, self.offset)])

    def _count(self, kind: str) -> Call:
        async def call(req: Request, system: System, signed: sdk.SignedCall) -> Response:
            await req.drain(MAX_SMALL_BODY)
            return _ok(count=len(self._pending(system, signed, kind)))

        return call

    def _agency_list(self, name: str) -> Call:
        async def call(req: Request, system: System, signed: sdk.SignedCall) -> Response:
            await req.drain(MAX_SMALL_BODY)
            d = self.e.trust.directory
            key = (name, d.serial)
            if key not in self._agencies:
                self._agencies = {k: v for k, v in self._agencies.items() if k[1] == d.serial}
                self._agencies[key] = sdk.ok(data=sdk_views.agencies(d, name, self.offset))
            return Response(200, self._agencies[key], JSON)

        return call

    async def _membership(self, req: Request, system: System, signed: sdk.SignedCall) -> Response:
        await req.drain(MAX_SMALL_BODY)
        raise SdkRequestError(SdkErrorCode.NOT_SUPPORTED, JOIN)


def _ok(**fields: Any) -> Response:
    return Response(200, sdk.ok(**fields), JSON)


def _code(text: str, what: str = "AgencyCode") -> AgencyCode:
    if not text:
        raise SdkRequestError(SdkErrorCode.MALFORMED, f"the call needs {what}: an agency code")
    try:
        return AgencyCode.parse(text.strip())
    except AgencyCodeError as exc:
        raise SdkRequestError(SdkErrorCode.MALFORMED, f"{what}: {exc.detail}") from None


def _kind(text: str) -> Kind:
    t = text.strip().lower()
    if t not in ("edoc", "status"):
        raise SdkRequestError(SdkErrorCode.MALFORMED, f"messagetype {text!r:.20} is not edoc or status")
    return Kind.EDOC if t == "edoc" else Kind.STATUS


async def _file_part(body: AsyncIterator[bytes], boundary: bytes) -> AsyncIterator[bytes]:
    """The bytes of the ``file_doc`` part as they arrive; other parts are read and dropped."""
    reader = MultipartReader(boundary)
    inside = found = False
    async for chunk in body:
        for ev in reader.feed(chunk):
            if isinstance(ev, PartStarted):
                inside = ev.name == FILE_PART and not found
                found = found or inside
            elif isinstance(ev, PartData) and inside:
                yield ev.data
            elif isinstance(ev, PartEnded):
                inside = False
    reader.close()
    if not found:
        raise SdkRequestError(SdkErrorCode.MALFORMED, f"the multipart body has no part named {FILE_PART}")
