"""Where transcripts, their versions and recorded audio are kept."""
