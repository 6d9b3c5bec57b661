"""Who is on the other end of an IPC connection, and what it may do (docs/ipc.md §1.2).

The kernel tells us the client's uid, gid and pid (``SO_PEERCRED``); its
supplementary groups come from ``/proc/<pid>/status``. ``[[ipc.clients]]``
tables in config.toml map accounts and groups to the hosted agencies they act
for. With no table, every account that can open the socket (mode 0660) acts
for every hosted agency — the socket's group is then the only boundary. With
tables, the node's own user and root may still do everything; another
account gets the union of the tables that match it, and an account no table
matches is turned away at connect.
"""

from __future__ import annotations

import grp
import os
import pwd
import socket
import struct
from dataclasses import dataclass

from protocol.agency import AgencyCode
from protocol.config import ClientRule
from protocol.errors import AccessDeniedError, ConfigError


@dataclass(frozen=True)
class PeerCred:
    pid: int
    uid: int
    gid: int

    @classmethod
    def of(cls, sock: socket.socket) -> PeerCred:
        raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        pid, uid, gid = struct.unpack("3i", raw)
        return cls(pid, uid, gid)

    def groups(self) -> frozenset[int]:
        """The client process's groups: its gid and, while it lives, its supplementary groups."""
        found = {self.gid}
        try:
            with open(f"/proc/{self.pid}/status") as f:
                for line in f:
                    if line.startswith("Groups:"):
                        found.update(int(g) for g in line.split()[1:])
                        break
        except OSError:
            pass  # the client already exited: its primary gid is all we know
        return frozenset(found)

    def describe(self) -> str:
        try:
            name = pwd.getpwuid(self.uid).pw_name
        except KeyError:
            name = "?"
        return f"uid {self.uid} ({name}), pid {self.pid}"


@dataclass(frozen=True)
class Access:
    """What one connection may do: act for ``codes`` (None = every hosted agency); ``admin`` = node-wide methods."""

    codes: frozenset[AgencyCode] | None
    admin: bool
    who: str
    cred: PeerCred | None = None

    def may_act_for(self, code: AgencyCode) -> bool:
        return self.codes is None or code in self.codes

    def require(self, code: AgencyCode) -> None:
        """Raise AccessDeniedError unless this client may act for ``code``."""
        if not self.may_act_for(code):
            allowed = ", ".join(str(c) for c in sorted(self.codes or ())) or "no agency"
            raise AccessDeniedError(f"{self.who} may act for {allowed}, not {code}")

    def require_admin(self, method: str) -> None:
        if not self.admin:
            raise AccessDeniedError(f"{method} is for the node's administrators; {self.who} is not one")


def _resolve(name: str, *, group: bool) -> int:
    if name.isdigit():
        return int(name)
    try:
        return grp.getgrnam(name).gr_gid if group else pwd.getpwnam(name).pw_uid
    except KeyError:
        raise ConfigError(f"[[ipc.clients]]: no {'group' if group else 'user'} named {name!r} on this machine") from None


class AccessPolicy:
    """The ``[[ipc.clients]]`` rules with names resolved to ids (at start: an unknown name is a ConfigError)."""

    def __init__(self, rules: tuple[ClientRule, ...], *, node_uid: int | None = None) -> None:
        self.node_uid = os.geteuid() if node_uid is None else node_uid
        self.rules = [(_resolve(r.user or r.group, group=not r.user), bool(r.user), r) for r in rules]

    @property
    def open(self) -> bool:
        """No rules: whoever can open the socket may do everything."""
        return not self.rules

    def for_peer(self, cred: PeerCred) -> Access:
        """The client's rights; raises AccessDeniedError for an account no rule names."""
        if self.open or cred.uid in (0, self.node_uid):
            return Access(None, True, cred.describe(), cred)
        groups = cred.groups()
        codes: set[AgencyCode] = set()
        admin = False
        matched = False
        for ident, is_user, rule in self.rules:
            if (is_user and ident == cred.uid) or (not is_user and ident in groups):
                matched = True
                codes.update(rule.codes)
                admin = admin or rule.admin
        if not matched:
            raise AccessDeniedError(f"{cred.describe()} is not listed in [[ipc.clients]] of this node's config.toml")
        return Access(frozenset(codes), admin, cred.describe(), cred)
