"""``python -m jdrl`` is the ``jdrl`` command."""

import sys

from jdrl.cli import main

sys.exit(main())
