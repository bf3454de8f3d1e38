"""`python -m mjx_dacer.cli` runs the `mjx-dacer` command."""

import sys

from mjx_dacer.cli import main

sys.exit(main())
