"""streamscribe: streaming real-time transcription server."""

__version__ = "0.1.0"
