"""`python -m cdp.cli`: the `cdp` command."""

import sys

from cdp.cli import main

if __name__ == "__main__":  # not when a tool imports every module of cdp
    sys.exit(main())
