"""The node daemon: the one place that uses trio and libp2p.

Before anything here imports py-libp2p, the parts of it a node never uses are
replaced by stand-ins (pitfall 32, node/slim_imports.py): a quarter of every
start's CPU.
"""

from node import slim_imports

slim_imports.install()
