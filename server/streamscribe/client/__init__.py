"""The Python SDK of the server.

    async with Client("http://127.0.0.1:8000", api_key=KEY) as client:
        async with client.stream("talk.wav", language="en") as stream:
            async for event in stream:   # wire.Ready, Partial, Final, ..., Closed
                ...
        accepted = await client.upload("memo.m4a", on_progress=print)
        transcript = await client.transcribe("meeting.mp4")

`Client` (session.py): live streams that resume by themselves after a dropped connection
(resume.py), uploads with progress, following a session, transcripts and exports. `SyncClient`
(sync.py): the same, blocking. `microphone()` (sources.py): a live source (the `mic` extra).
Lower level: stream.py (the measuring stream client of the benchmarks and tests), http.py (auth
headers, the server's refusals as errors), webrtc.py (an aiortc peer).
"""

from ..errors import ConnectionLost
from .resume import Stream, StreamSummary
from .session import Client, UploadOptions
from .sources import Microphone, microphone
from .sync import SyncClient, SyncStream

__all__ = [
    "Client",
    "ConnectionLost",
    "Microphone",
    "Stream",
    "StreamSummary",
    "SyncClient",
    "SyncStream",
    "UploadOptions",
    "microphone",
]
