"""`gdos-console`: the desktop console (being built; see the console issue)."""

import sys


def main() -> int:
    print("gdos-console: the desktop console is not built yet; use the REST API (README).")
    return 2


if __name__ == "__main__":
    sys.exit(main())
