"""GDOS agent: one per host; deploys, runs, watches and reports the services placed on it."""
