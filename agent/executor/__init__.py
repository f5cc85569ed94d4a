"""Doing things to services: deploy, start, stop, destroy (and, later, adopt and health)."""
