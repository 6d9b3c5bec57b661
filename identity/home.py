"""A node's home: the one place that names its files.

``truc init`` creates it (identity/provision.py), ``truc run`` reads it
(node/daemon.py), the CLI finds the node's socket through it (cli/main.py),
``truc store ...`` finds the store (node/maintenance.py)::

    config.toml        settings (docs: render_config in protocol/config.py)
    node.key           libp2p identity (0600)
    keys/CODE.key      secret keys of each hosted agency (0600; the folder 0700)
    authority.pub      the pinned network authority key        } where config.toml says
    directory.cbor     the signed directory chain to start from } ([node] authority, directory,
    store/             LevelDB                                  }  store, ipc_socket, psk_file;
    truc.sock          IPC socket (0660) while running          }  relative to the home)
    swarm.key          the network's private-network key, when there is one
    join-request.cbor  what the authority needs to list this node
    spool/             attachments being received over the socket (0700; emptied at start)
    cache/             the directory's verified form (0700; safe to delete: rebuilt at start)
    sdk/ID.secret      an SDK document system's secret (0600; `truc sdk add-system`, identity/sdk_systems.py)

The names of the files config.toml may move are its defaults (protocol/config.py
``NodeConfig``); the others are fixed here.
"""

from __future__ import annotations

from pathlib import Path

from protocol.agency import AgencyCode
from protocol.config import NodeConfig, parse_config
from protocol.errors import ConfigError

CONFIG_FILE = "config.toml"
PSK_FILE_NAME = "swarm.key"  # a home's copy of the network's private-network key (go-libp2p's name for it)


class Home:
    """The paths of the node home at ``root``; ``config`` is read from its config.toml when first asked for.

    ``config`` may be given instead (``truc init`` builds it before writing
    the file). Paths the config names are resolved against ``root`` unless
    absolute.
    """

    def __init__(self, root: Path, config: NodeConfig | None = None) -> None:
        self.root = Path(root)
        self._config = config

    @classmethod
    def load(cls, root: Path) -> Home:
        """The home at ``root`` with its config.toml read now; raises ConfigError naming the file and the fix."""
        home = cls(root)
        home.config  # noqa: B018 - read now, so a bad home fails here
        return home

    def __repr__(self) -> str:
        return f"Home({str(self.root)!r})"

    @property
    def config(self) -> NodeConfig:
        if self._config is None:
            path = self.config_file
            try:
                text = path.read_text("utf-8")
            except FileNotFoundError:
                raise ConfigError(
                    f"{path} does not exist; create a node home with: truc init --home {self.root} --code CODE --authority FILE"
                ) from None
            except OSError as exc:
                raise ConfigError(f"{path}: {exc.strerror}") from None
            self._config = parse_config(text, str(path))
        return self._config

    def path(self, value: str) -> Path:
        """A path from config.toml: as is if absolute, else inside the home."""
        p = Path(value)
        return p if p.is_absolute() else self.root / p

    # --- fixed by the layout ----------------------------------------------------------

    @property
    def config_file(self) -> Path:
        return self.root / CONFIG_FILE

    @property
    def node_key(self) -> Path:
        return self.root / "node.key"

    @property
    def keys_dir(self) -> Path:
        return self.root / "keys"

    def agency_key(self, code: AgencyCode) -> Path:
        return self.keys_dir / f"{code}.key"

    @property
    def join_request(self) -> Path:
        return self.root / "join-request.cbor"

    @property
    def spool(self) -> Path:
        return self.root / "spool"

    @property
    def cache(self) -> Path:
        return self.root / "cache"

    # --- named by config.toml ---------------------------------------------------------

    @property
    def authority_pub(self) -> Path:
        return self.path(self.config.authority)

    @property
    def directory(self) -> Path:
        return self.path(self.config.directory)

    @property
    def store(self) -> Path:
        return self.path(self.config.store)

    @property
    def socket(self) -> Path:
        return self.path(self.config.ipc_socket)

    @property
    def psk_file(self) -> Path | None:
        """The private-network key file, if config.toml names one."""
        return self.path(self.config.psk_file) if self.config.psk_file else None

    @property
    def psk_also_accept(self) -> list[Path]:
        return [self.path(p) for p in self.config.psk_also_accept]

    @property
    def secret_files(self) -> list[Path]:
        """The node's and its agencies' secret keys, the network's private-network keys and the SDK systems' secrets.

        Never read for a client.
        """
        psk = [self.psk_file] if self.psk_file is not None else []
        sdk = [self.path(s.secret_file) for s in self.config.sdk.systems]
        return [self.node_key, *(self.agency_key(c) for c in self.config.codes), *psk, *self.psk_also_accept, *sdk]
