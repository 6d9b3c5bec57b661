"""Every error a user, an operator or a remote peer can cause.

One module so the CLI and the IPC server map errors to messages and codes in
one place. Each class has a stable machine ``code`` (used on the IPC wire and
in ``envelope.rejected reason=...`` log lines) and a docstring whose first
line is the message the person who caused it reads; ``detail`` adds the
specifics (which field, which key, which file).

Whose fault: subclasses of :class:`RemoteError` are raised for bytes that came
from elsewhere (a peer, a file, an integrator's request); the node rejects,
counts and carries on. A bug in this program raises ordinary exceptions
(``AssertionError``, ``TypeError``...) and should crash loudly.

Exit status: each class carries the ``exit_code`` a command ends with when
that error stops it (click's ``ClickException.exit_code`` pattern), so
``truc`` (cli/main.py) and ``truc run`` (node/daemon.py) cannot map them
differently. One rule:

* 0 — done;
* 1 — refused or failed (``EXIT_REFUSED``, the default): the node, a peer or
  the store said no (an unknown agency, an illegal status, ``busy``, a store
  in use by a running node, ...); the same command may succeed later or with
  other data;
* 2 — the person running it must fix something first (``EXIT_FIX_IT``): the
  command line or what it names (a bad field, agency code or attachment),
  ``config.toml``, a key file, the directory file, or a store that is
  damaged, foreign or not writable. systemd does not restart ``truc run``
  after it (``RestartPreventExitStatus=2``): restarting cannot fix it. click's
  own usage errors also exit 2;
* 3 — no node is running at that home (``EXIT_NOT_RUNNING``).
"""

from __future__ import annotations

from enum import Enum
from typing import ClassVar

EXIT_REFUSED = 1
EXIT_FIX_IT = 2
EXIT_NOT_RUNNING = 3


class TrucError(Exception):
    """Something went wrong."""

    code = "error"
    exit_code: ClassVar[int] = EXIT_REFUSED
    _wire_message: str | None = None

    def __init__(self, detail: str = "") -> None:
        self.detail = detail
        super().__init__(self.message)

    @property
    def message(self) -> str:
        if self._wire_message is not None:
            return self._wire_message
        head = (type(self).__doc__ or "").strip().splitlines()[0]
        return f"{head}: {self.detail}" if self.detail else head

    @classmethod
    def from_wire(cls, code: str, message: str) -> TrucError:
        """Rebuild an error a node sent over IPC: the class for ``code``, the node's message as is."""
        target = error_class(code)
        exc = target.__new__(target)
        exc.detail = message
        exc._wire_message = message
        exc.code = code
        Exception.__init__(exc, message)
        return exc


class RemoteError(TrucError):
    """Input from outside this node was refused."""

    code = "rejected"


# --- bytes and schema ---------------------------------------------------------


class DecodeError(RemoteError):
    """The data is not valid canonical CBOR for this format"""

    code = "malformed"


class TooLargeError(DecodeError):
    """The data is larger than this format allows"""

    code = "too_large"


class SchemaError(DecodeError):
    """A field is missing, unexpected or of the wrong type"""

    code = "bad_schema"
    exit_code = EXIT_FIX_IT


class AgencyCodeError(RemoteError):
    """Not an agency code; expected the QCVN 102 form 000.00.00.G22 or the short form G22 / G09.01"""

    code = "bad_agency_code"
    exit_code = EXIT_FIX_IT


class FrameError(DecodeError):
    """A length-prefixed frame is malformed"""

    code = "bad_frame"


# --- signatures, hashes, encryption -------------------------------------------


class SignatureError(RemoteError):
    """The signature does not verify"""

    code = "bad_signature"


class HashMismatchError(RemoteError):
    """The content does not match the hash it was announced with"""

    code = "hash_mismatch"


class DecryptError(RemoteError):
    """The content cannot be decrypted with this agency's key"""

    code = "cannot_decrypt"


# --- trust --------------------------------------------------------------------


class UnknownAgencyError(RemoteError):
    """This agency code is not in the directory"""

    code = "unknown_agency"


class UnknownKeyError(RemoteError):
    """The signing key is not listed for this agency in the directory"""

    code = "unknown_key"


class RevokedKeyError(RemoteError):
    """The signing key has been revoked by the network authority"""

    code = "revoked_key"


class KeyNotValidError(RemoteError):
    """The signing key is outside its validity window"""

    code = "key_not_valid"


class NotAuthorizedError(RemoteError):
    """This party is not allowed to do this"""

    code = "not_authorized"


class NotARecipientError(TrucError):
    """Only the recipients can open a document (it is encrypted to their keys); its sender sees it with document.track"""

    code = "not_a_recipient"


class WrongNetworkError(RemoteError):
    """The data belongs to another network"""

    code = "wrong_network"


class StaleEnvelopeError(RemoteError):
    """The envelope's time is outside the accepted window (too old, or in the future)"""

    code = "stale"


class DirectoryError(RemoteError):
    """The directory is not valid"""

    code = "bad_directory"
    exit_code = EXIT_FIX_IT


class DirectoryExpiredError(TrucError):
    """The directory has expired; ask the network authority for a new one (truc directory add)"""

    code = "directory_expired"


class IllegalTransitionError(RemoteError):
    """This status is not allowed at this point of the document's processing"""

    code = "illegal_transition"


class DocumentIdTakenError(RemoteError):
    """This sender already used this edXML DocumentId, for the same recipients, with other content"""

    code = "document_id_taken"
    exit_code = EXIT_FIX_IT


class ParkedLimitError(RemoteError):
    """Too many statuses from this agency are waiting here for documents this node does not have"""

    code = "too_many_parked"


# --- local configuration and files --------------------------------------------


class KeyFileError(TrucError):
    """A key file cannot be used"""

    code = "key_file"
    exit_code = EXIT_FIX_IT


class ConfigError(TrucError):
    """The configuration is not valid"""

    code = "config"
    exit_code = EXIT_FIX_IT


class StoreError(TrucError):
    """The local store cannot be used"""

    code = "store"


class StoreLockedError(StoreError):
    """The store is in use by another process (is a node already running with this home?)"""

    code = "store_locked"


class StoreNotWritableError(StoreError):
    """The store directory is not writable by this user (run the node as the store's owner, or fix its owner and mode)"""

    code = "store_not_writable"
    exit_code = EXIT_FIX_IT


class StoreCorruptError(StoreError):
    """The store is damaged: stop the node and run truc store check (docs/operations.md, "The store is damaged")"""

    code = "store_corrupt"
    exit_code = EXIT_FIX_IT


class StoreForeignError(StoreError):
    """This store belongs to another node or network: point [node] store at this node's own store"""

    code = "store_foreign"
    exit_code = EXIT_FIX_IT


class NotFoundError(TrucError):
    """Nothing with this id is known here"""

    code = "not_found"


class NotHostedError(TrucError):
    """This agency is not hosted on this node"""

    code = "not_hosted"


class FileError(TrucError):
    """An attachment cannot be read"""

    code = "file"
    exit_code = EXIT_FIX_IT


class AccessDeniedError(TrucError):
    """This socket client may not do this (see [[ipc.clients]] in the node's config.toml)"""

    code = "access_denied"


class BusyError(TrucError):
    """The node is at its limit for this right now; try again shortly"""

    code = "busy"


class IpcTimeoutError(TrucError):
    """The client took too long"""

    code = "timeout"


class NodeNotRunningError(TrucError):
    """No node is running here (start it with: truc run --home DIR)"""

    code = "not_running"
    exit_code = EXIT_NOT_RUNNING


class InternalError(TrucError):
    """The node failed while answering (a bug: see the node's log)"""

    code = "internal"


class ShuttingDownError(TrucError):
    """The node is shutting down and takes no new work; send it again once the node is back"""

    code = "shutting_down"


def find_truc_error(exc: BaseException) -> TrucError | None:
    """The TrucError ``exc`` is or wraps, depth first (trio wraps a task's error in exception groups)."""
    if isinstance(exc, TrucError):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = find_truc_error(inner)
            if found is not None:
                return found
    return None


def error_class(code: str) -> type[TrucError]:
    """The error type for a wire ``code`` (TrucError for unknown codes)."""

    def walk(cls: type[TrucError]) -> list[type[TrucError]]:
        out = [cls]
        for sub in cls.__subclasses__():
            out.extend(walk(sub))
        return out

    for cls in walk(TrucError):
        if cls.code == code:
            return cls
    return TrucError


# --- edXML ---------------------------------------------------------------------
# A package from an agency's document system (protocol/edxml). Every one is a
# RemoteError: the bytes came from outside; nothing of the package is kept.


class EdxmlError(RemoteError):
    """The edXML package is not valid"""

    code = "edxml"
    exit_code = EXIT_FIX_IT


class EdxmlSyntaxError(EdxmlError):
    """The edXML package is not well-formed XML"""

    code = "edxml_syntax"


class EdxmlForbiddenError(EdxmlError):
    """The edXML package uses a DTD or entities, which are refused for safety (no DOCTYPE is allowed)"""

    code = "edxml_forbidden"


class EdxmlLimitError(EdxmlError):
    """The edXML package exceeds a size or count limit"""

    code = "edxml_limit"


class EdxmlNotEdxmlError(EdxmlError):
    """This is not an edXML package: the root must be edXML in the namespace http://www.mic.gov.vn/TBT/QCVN_102_2016"""

    code = "edxml_not_edxml"


class EdxmlHeaderError(EdxmlError):
    """The edXML header lacks a required element or has an invalid value"""

    code = "edxml_header"


class EdxmlManifestError(EdxmlError):
    """The manifest (edXMLManifest) and the attachments (AttachmentEncoded) do not match"""

    code = "edxml_manifest"


class EdxmlBase64Error(EdxmlError):
    """An attachment's ContentTransferEncoded is not valid base64"""

    code = "edxml_base64"


class EdxmlUnsafeNameError(EdxmlError):
    """A file name in the edXML package is unsafe (path separator, '..', NUL or control character)"""

    code = "edxml_unsafe_name"


class EdxmlZipError(EdxmlError):
    """A zipped attachment is corrupt, truncated, encrypted or not a form this codec can read"""

    code = "edxml_zip"


class EdxmlZipBombError(EdxmlZipError):
    """A zipped attachment inflates beyond the allowed size or compression ratio (zip bomb)"""

    code = "edxml_zip_bomb"


# --- the national SDK's HTTP calls (protocol/sdk.py, node/sdk.py) ------------------------


class SdkErrorCode(Enum):
    """``ErrorCode`` of the FAIL envelope; the value is what goes on the wire. docs/sdk.md §6 is the table."""

    OK = "0"
    MALFORMED_AUTH = "101"  # signature headers missing or not in the SDK's form
    UNKNOWN_SYSTEM = "102"
    BAD_SIGNATURE = "103"
    STALE_TIMESTAMP = "104"
    REPLAY = "105"
    FOREIGN_AGENCY = "106"
    RATE_LIMITED = "107"
    TOO_LARGE = "108"
    MALFORMED = "109"  # the call's own headers, multipart body, missing part
    HASH_MISMATCH = "110"
    UNKNOWN_CALL = "111"
    NOT_SUPPORTED = "112"  # registerAgency, deleteAgency
    TIMEOUT = "113"
    BUSY = "114"  # too many connections, or the node is busy or stopping: retry later
    REFUSED = "201"  # the node refused the document or status (ErrorDesc says which rule, with Trục's code)
    NOT_FOUND = "202"
    INTERNAL = "500"

    @property
    def reason(self) -> str:
        """The label in logs and metrics (``sdk_refused{reason=...}``)."""
        return self.name.lower()


class SdkRequestError(RemoteError):
    """The document system's request was refused"""

    code = "sdk_refused"

    def __init__(self, error: SdkErrorCode, detail: str = "") -> None:
        self.error = error
        super().__init__(detail)
