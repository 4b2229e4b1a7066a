"""The asyncio runtime around the sans-I/O core: the decode scheduler, session drivers and feeders, outboxes, and the one place sessions are opened."""
