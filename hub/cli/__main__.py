"""``python -m hub.cli``: the same as the ``channelhub`` command."""

from __future__ import annotations

import sys

from hub.cli.main import main

sys.exit(main())
