"""Generated inputs: JSON values, the client messages of every protocol with their fields
mutated, header values, ids and option fields."""

from __future__ import annotations

import json
import string
from typing import Any

from hypothesis import strategies as st

deeply_nested = st.integers(100, 200_000).map(lambda depth: "[" * depth + "]" * depth) | st.integers(
    100, 200_000
).map(lambda depth: '{"a":' * depth + "1" + "}" * depth)
"""JSON a recursive decoder chokes on."""
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63)
    | st.floats(allow_nan=False)
    | st.text(max_size=40),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)
weird_numbers = (
    st.sampled_from([0, 1, -1, 8000, 16000, 44100, 48000, 2**31, 2**63, 1e308, -0.0, 0.5])
    | st.integers(-(2**40), 2**40)
    | st.floats(allow_nan=False)
)
short_text = st.text(max_size=24) | st.sampled_from(
    ["", "en", "fr", "zz", "EN", "auto", "tiny.en", "base", "../x"]
)
header_text = st.text(
    alphabet=string.printable.replace("\r", "").replace("\n", "").replace("\x0b", "").replace("\x0c", ""),
    max_size=60,
)
"""What an HTTP client can put in a header value."""
ids = st.text(
    alphabet=string.ascii_letters + string.digits + "-_.%~/:@!$&'()*+,;=", min_size=1, max_size=40
) | st.sampled_from(["..", "../../etc/passwd", "%2e%2e%2f", "0" * 32, "a" * 300, "null", "-1"])
"""Path segments a client may put where an id goes."""


def mutated(
    message: dict[str, Any], fields: dict[str, st.SearchStrategy[Any]]
) -> st.SearchStrategy[dict[str, Any]]:
    """`message` with any of `fields` set to generated values, any of its own dropped, and any
    unknown field added."""
    return st.builds(
        lambda chosen, dropped, extra: {
            **{key: value for key, value in message.items() if key not in dropped},
            **chosen,
            **extra,
        },
        st.fixed_dictionaries(
            {}, optional={name: strategy | json_values for name, strategy in fields.items()}
        ),
        st.sets(st.sampled_from(sorted(message)), max_size=len(message)),
        st.dictionaries(st.text(max_size=10), json_values, max_size=2),
    )


start_messages = mutated(
    {"type": "start"},
    {
        "sample_rate": weird_numbers,
        "encoding": st.sampled_from(["pcm_s16le", "pcm_f32le", "opus", "mulaw", "PCM_S16LE", ""]),
        "channels": weird_numbers,
        "language": short_text | st.none(),
        "model": short_text | st.none(),
        "prompt": st.text(max_size=1100) | st.none(),
        "audio_retention_h": weird_numbers | st.none(),
        "type": st.sampled_from(["start", "stop", "finalize", "Start", "", "ready"]),
    },
)
other_messages = mutated(
    {"type": "stop"}, {"wait_for_transcript": st.booleans(), "type": st.sampled_from(["stop", "finalize"])}
)
text_frames = (
    start_messages.map(json.dumps)
    | other_messages.map(json.dumps)
    | json_values.map(json.dumps)
    | st.text(max_size=300)
    | st.just("[" * 5000)
)
binary_frames = st.binary(max_size=3000) | st.integers(0, 40000).map(bytes)
