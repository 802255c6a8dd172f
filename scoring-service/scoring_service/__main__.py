"""`python -m scoring_service`."""

import sys

from scoring_service.cli import main

sys.exit(main())
