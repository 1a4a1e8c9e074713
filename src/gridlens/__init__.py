"""gridlens: grid-edge measurements turned into trustworthy answers.

Subpackages, each a room with one job:

- :mod:`gridlens.pq` -- waveforms to fundamental power, power factor (three methods), THD,
  frequency tracking and capacitor-step recommendations.

Errors raised anywhere in gridlens derive from :class:`gridlens.errors.GridlensError`.
"""

from gridlens.errors import GridlensError

__version__ = "0.1.0"

__all__ = ["GridlensError", "__version__"]
