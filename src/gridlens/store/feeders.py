"""Feeders in the store: their .dss text, µPMUs, the meters on their buses, hourly estimates.

The ORM classes live here (on :class:`gridlens.store.models.Base`); their tables come from
migration 0005. :class:`FeedersMixin` holds the :class:`~gridlens.store.repo.Store` methods.
"""

from __future__ import annotations


class FeedersMixin:
    """The feeder methods of :class:`gridlens.store.repo.Store`."""
