"""What the server keeps: transcripts and their versions, second-pass jobs, session events and
recorded audio; the protocols (base.py, handover.py) and their embedded implementations."""
