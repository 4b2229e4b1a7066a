"""Second pass at end of stream: re-decode, merge, diarize, enhance -> a new transcript version."""
