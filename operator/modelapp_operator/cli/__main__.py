"""``python -m modelapp_operator.cli``: the same as the ``modelapp`` console script."""

import sys

from modelapp_operator.cli import main

sys.exit(main())
