"""The --metrics-port of a worker (or a server): its Metrics alone, on loopback, with no key, for
as long as it runs."""

import socket

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from streamscribe.metrics import Metrics
from streamscribe.transports.metrics import loopback_metrics, metrics_route


def free_loopback_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_a_worker_serves_its_second_pass_figures_on_loopback_while_it_runs() -> None:
    metrics = Metrics()
    metrics.second_pass_jobs.labels(state="done").inc()
    metrics.second_pass_duration.labels(state="done").observe(4.2)
    port = free_loopback_port()
    url = f"http://127.0.0.1:{port}"
    async with aiohttp.ClientSession() as http:
        async with loopback_metrics(port, metrics_route(metrics)):
            async with http.get(url + "/metrics") as response:
                assert response.status == 200
                text = await response.text()
            async with http.get(url + "/v1/transcripts") as response:
                assert response.status == 404, "only /metrics is served there"
        samples = {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        }
        assert samples[("streamscribe_second_pass_jobs_total", (("state", "done"),))] == 1
        assert samples[("streamscribe_second_pass_duration_seconds_sum", (("state", "done"),))] == 4.2
        assert not any(name.startswith("streamscribe_live_sessions") for name, _labels in samples)
        with pytest.raises(aiohttp.ClientConnectionError):
            async with http.get(url + "/metrics"):
                pass
