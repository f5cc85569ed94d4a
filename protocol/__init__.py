"""Shared vocabulary of GDOS: states, the service.json manifest, agent-channel messages, errors.

Imports nothing from `master`, `agent` or `console`; all three import from here.
"""

__version__ = "0.1.0"
