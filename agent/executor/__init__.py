"""Doing things to services: deploy, start, stop, adopt and destroy them, and watch them run."""
