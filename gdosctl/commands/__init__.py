"""gdosctl's commands, one module per area; each imports heavy modules only when it runs."""
