"""The node daemon: the one place that uses trio and libp2p."""
