"""The ``truc`` command line: admin and integrator commands.

Commands that ask a running node anything go through the IPC client only.
"""
