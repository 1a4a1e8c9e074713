"""``python -m gridlens.cli``: the ``gridlens`` command."""

import sys

from gridlens.cli import main

sys.exit(main())
