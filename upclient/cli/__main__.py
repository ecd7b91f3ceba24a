"""``python -m upclient.cli``, the same as ``upclient``."""

import sys

from .main import main

sys.exit(main())
