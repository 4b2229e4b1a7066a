"""Transports move bytes and await; the session core does the rest."""
