# The agent uses only websockets' sans-I/O client (agent.wsclient), which imports what it needs
# directly; the library's own hook would ask for every submodule, the excluded ones included.
hiddenimports: list[str] = []
