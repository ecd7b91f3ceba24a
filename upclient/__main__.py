"""``python -m upclient``: the same as the ``upclient`` command."""

import sys

from .cli import main

sys.exit(main())
