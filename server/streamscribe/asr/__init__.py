"""Speech recognition engines and model resolution."""
