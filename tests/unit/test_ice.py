"""The public address offered in a WebRTC answer (transports/ice.py), pure logic."""

from aiortc import RTCIceGatherer

from streamscribe.config import ServerSettings
from streamscribe.transports.ice import announce_address, peer_configuration

ANSWER = (
    "v=0\r\n"
    "m=audio 50003 UDP/TLS/RTP/SAVPF 111\r\n"
    "a=candidate:9c1 1 udp 2130706431 172.17.0.2 50003 typ host\r\n"
    "a=candidate:4f2 1 udp 1694498815 198.51.100.9 50003 typ srflx raddr 172.17.0.2 rport 50003\r\n"
    "a=end-of-candidates\r\n"
)


def test_each_host_candidate_is_offered_again_at_the_public_address_on_its_port() -> None:
    lines = announce_address(ANSWER, "203.0.113.4").splitlines()
    assert lines[3] == "a=candidate:9c1p 1 udp 2130706430 203.0.113.4 50003 typ host"
    long_foundation = announce_address(ANSWER.replace("9c1", "f" * 32), "203.0.113.4").splitlines()[3]
    assert long_foundation.startswith("a=candidate:" + "f" * 31 + "p "), (
        "a foundation is at most 32 characters"
    )
    assert lines[2].endswith("172.17.0.2 50003 typ host"), "the host's own address stays"
    assert sum("203.0.113.4" in line for line in lines) == 1, "reflexive candidates are left alone"


def test_an_address_already_offered_is_not_repeated() -> None:
    assert announce_address(ANSWER, "172.17.0.2") == ANSWER


def test_candidates_of_the_other_address_family_are_not_announced() -> None:
    ipv6 = ANSWER.replace("172.17.0.2 50003 typ host", "fd00::2 50003 typ host")
    assert announce_address(ipv6, "203.0.113.4") == ipv6


def test_a_peer_asks_no_stun_or_turn_server_the_operator_did_not_name() -> None:
    """aiortc falls back on a public STUN server when given none; the server's peers never do."""
    unnamed = RTCIceGatherer(iceServers=peer_configuration(ServerSettings()).iceServers)
    assert unnamed._connection.stun_server is None and unnamed._connection.turn_server is None
    named = ServerSettings(webrtc_stun_url="stun:stun.example.net:3478")
    gatherer = RTCIceGatherer(iceServers=peer_configuration(named).iceServers)
    assert gatherer._connection.stun_server == ("stun.example.net", 3478)
