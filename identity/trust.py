"""Trust decisions, in one place.

* May this key sign for this agency at this time?
* Is this envelope authentic, current and from a party allowed to send it?
* Is this peer a member of the network?

Every answer comes from the current verified directory and the pinned
authority key; nothing else is trusted. Revocation is absolute: a revoked key
is refused whatever time the envelope claims, because a stolen key can
backdate. Routine rotation uses the key's validity window instead.
"""

from __future__ import annotations

from dataclasses import dataclass

from protocol.agency import AgencyCode
from protocol.envelope import DirectoryHeader, Envelope, Kind, MessageHeader, check_time
from protocol.errors import (
    DirectoryExpiredError,
    KeyNotValidError,
    NotAuthorizedError,
    RevokedKeyError,
    UnknownKeyError,
    WrongNetworkError,
)
from protocol.status import Role, StatusCode

from .directory import Directory, NodeRecord, verify_link
from .keys import AuthorityPublic, verify_signature
from .sealing import Recipient

DAY_MS = 86_400_000


@dataclass(frozen=True)
class TimePolicy:
    max_age_ms: int = 30 * DAY_MS  # older envelopes are refused unless already known
    max_skew_ms: int = 5 * 60_000  # clock skew tolerated for envelopes from the future


class Trust:
    def __init__(self, directory: Directory, authority: AuthorityPublic, policy: TimePolicy | None = None) -> None:
        self.directory = directory
        self.authority = authority
        self.policy = policy or TimePolicy()

    @property
    def net(self) -> str:
        return self.directory.net

    def check_current(self, now: int) -> None:
        """Raise DirectoryExpiredError when the directory is past its validity."""
        if now > self.directory.valid_until:
            raise DirectoryExpiredError(
                f"serial {self.directory.serial} was valid until {self.directory.valid_until} ms, it is now {now} ms"
            )

    def signing_key(self, code: AgencyCode, kid: bytes, at: int) -> bytes:
        """The public key ``kid`` of ``code`` if it may sign at time ``at``.

        Raises UnknownAgencyError, UnknownKeyError, RevokedKeyError or
        KeyNotValidError.
        """
        rec = self.directory.agency(code)
        if kid in self.directory.revoked:
            raise RevokedKeyError(f"key {kid.hex()} of {code}")
        for k in rec.signing_keys:
            if k.kid == kid:
                if not k.not_before <= at <= k.not_after:
                    raise KeyNotValidError(
                        f"key {kid.hex()} of {code} is valid {k.not_before}..{k.not_after}, envelope time {at}"
                    )
                return k.public
        owner = self.directory.key_owner(kid)
        if owner is not None:
            raise NotAuthorizedError(f"key {kid.hex()} belongs to {owner.code}, not to {code}")
        raise UnknownKeyError(f"key {kid.hex()} for {code}")

    def verify(self, env: Envelope, now: int, *, check_age: bool = True) -> None:
        """Check network, directory freshness, time window, signer and signature.

        ``check_age`` is off for envelopes already known to be valid (sync of
        old data). Raises a TrucError subclass describing the first problem.
        """
        header = env.header
        if header.net != self.net:
            raise WrongNetworkError(f"envelope is for {header.net!r}, this node is on {self.net!r}")
        if isinstance(header, DirectoryHeader):
            verify_link(env, self.authority)
            return
        self.check_current(now)
        if check_age:
            check_time(header.at, now, max_age_ms=self.policy.max_age_ms, max_skew_ms=self.policy.max_skew_ms)
        public = self.signing_key(header.sender, header.kid, header.at)
        for code in header.to:
            self.directory.agency(code)  # raises UnknownAgencyError
        verify_signature(public, env.signed_bytes, env.signature)

    def status_role(self, status: MessageHeader, document: MessageHeader) -> tuple[Role, AgencyCode]:
        """Who authored ``status`` about ``document``, and whose thread it belongs to.

        Raises NotAuthorizedError when the author is neither the document's
        sender (writing to a recipient) nor one of its recipients (writing to
        the sender), or when a sender-only or recipient-only code comes from
        the other party.
        """
        assert status.kind is Kind.STATUS and status.code is not None
        (to,) = status.to
        if status.sender == document.sender and to in document.to:
            role, thread = Role.SENDER, to
        elif status.sender in document.to and to == document.sender:
            role, thread = Role.RECIPIENT, status.sender
        else:
            raise NotAuthorizedError(f"{status.sender} is not a party to document {status.doc} with {to}")
        if role is Role.SENDER and status.code is not StatusCode.TAKEBACK_REQUESTED:
            raise NotAuthorizedError(f"only the recipient sends status {status.code}")
        if role is Role.RECIPIENT and status.code is StatusCode.TAKEBACK_REQUESTED:
            raise NotAuthorizedError("only the original sender can ask to take a document back (13)")
        return role, thread

    def is_member(self, peer_id: str) -> bool:
        return peer_id in self.directory.nodes

    def recipient(self, code: AgencyCode) -> Recipient:
        """Encryption target for ``code``; raises UnknownAgencyError."""
        return Recipient(code, self.directory.agency(code).encryption_key)

    def host_of(self, code: AgencyCode) -> NodeRecord:
        return self.directory.node_of(code)
