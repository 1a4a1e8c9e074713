"""Anomaly events in the store: found per meter, acknowledged, muted and commented by people.

The ORM classes live here (on :class:`gridlens.store.models.Base`); their tables come from
migration 0004. :class:`AnomalyEventsMixin` holds the :class:`~gridlens.store.repo.Store` methods.
"""

from __future__ import annotations


class AnomalyEventsMixin:
    """The anomaly-event methods of :class:`gridlens.store.repo.Store`."""
