"""Entry point of the frozen master (build_spec/master.spec)."""

import sys

from master.__main__ import main

if __name__ == "__main__":
    sys.exit(main())
