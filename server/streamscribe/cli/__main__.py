"""`python -m streamscribe.cli`: the same as the `streamscribe` command."""

import sys

from .main import main

sys.exit(main())
