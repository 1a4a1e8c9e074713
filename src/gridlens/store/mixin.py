"""What the method groups of :class:`gridlens.store.repo.Store` use from it.

:class:`~gridlens.store.commands.CommandsMixin`, :class:`~gridlens.store.events.AnomalyEventsMixin`
and :class:`~gridlens.store.feeders.FeedersMixin` each hold one group of ``Store`` methods in
their own module. They call ``Store``'s session, device lookup and audit; these declarations
tell the type checker so, once (``Store`` defines them).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

    from sqlalchemy.orm import Session

    from gridlens.store.models import Device

__all__ = ["StoreMixin"]


class StoreMixin:
    """Base of the ``Store`` method groups (declarations for the type checker only)."""

    if TYPE_CHECKING:

        def session(self) -> AbstractContextManager[Session]: ...

        def device(self, device_id: int) -> Device: ...

        @staticmethod
        def _audit(
            s: Session,
            actor: str,
            action: str,
            target: str | None = None,
            detail: dict[str, Any] | None = None,
            now: float | None = None,
        ) -> None: ...
