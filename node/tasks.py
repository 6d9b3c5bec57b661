"""``TaskStatus`` for annotations of services started with ``nursery.start``.

py-libp2p depends on trio-typing, whose ``trio-stubs`` mypy prefers to trio's
own inline types; those stubs name the type ``trio_typing.TaskStatus``, not
``TaskStatus``. At run time it is trio's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from trio_typing import TaskStatus as TaskStatus
else:
    from trio import TaskStatus as TaskStatus

__all__ = ["TaskStatus"]
