"""gdosctl: the command line of GDOS, for operators and CI pipelines.

A thin shell over the console's client module (`console.client`): one client serves the desktop
console, this command line and users' own scripts. Nothing here imports Qt, and the modules
that `--version` and `--help` load import neither httpx nor rich.
"""
