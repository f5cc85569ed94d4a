"""`gdosctl` / `python -m gdosctl`."""


def main() -> None:
    from gdosctl.cli import cli

    cli(prog_name="gdosctl")


if __name__ == "__main__":
    main()
