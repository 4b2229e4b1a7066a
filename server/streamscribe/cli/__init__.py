"""The command line: `streamscribe serve | transcribe | stream | bench...`. A leaf: nothing imports it."""
