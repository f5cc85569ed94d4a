"""Entry point of the frozen console (build_spec/console.spec)."""

import sys

from console.__main__ import main

if __name__ == "__main__":
    sys.exit(main())
