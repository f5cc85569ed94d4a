"""Entry point of the frozen agent (build_spec/agent.spec)."""

import sys

from agent.__main__ import main

if __name__ == "__main__":
    sys.exit(main())
