"""`gdosctl` / `python -m gdosctl`."""

import sys


def main() -> None:
    if sys.argv[1:] == ["--version"]:  # scripts call it often: answered before click loads
        from protocol import __version__

        print(f"gdosctl {__version__}")
        return
    from gdosctl.cli import cli

    cli(prog_name="gdosctl")


if __name__ == "__main__":
    main()
