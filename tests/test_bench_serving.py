"""The serving benchmark's transport floor (`bench._transport_floor`): bare echo servers over loopback.

No timings are asserted: only that both floor paths answer what they were sent
and stop cleanly, and that the report sets the floor's gRPC minus REST next to
the template's.
"""

from bench import serving
from bench._transport_floor import FLOOR_PATHS, PAYLOAD, echo_calls


def test_both_floor_paths_echo_their_payload_and_stop_ends_the_child():
    calls, stop = echo_calls(handler_ms=0.0)
    try:
        assert set(calls) == set(FLOOR_PATHS)
        for name, call in calls.items():
            for _ in range(3):  # the kept-alive connection and the channel serve again
                assert call() == PAYLOAD, name
    finally:
        stop()


def test_floor_text_sets_the_floors_difference_next_to_the_templates():
    def row(rest, rpc, rest_floor, rpc_floor):
        return {"REST": {"p50": rest}, "gRPC": {"p50": rpc},
                "REST floor": {"p50": rest_floor}, "gRPC floor": {"p50": rpc_floor}}

    results = [row(2.0, 2.5, 1.0, 1.3), row(2.2, 2.9, 1.2, 1.4), row(2.1, 2.8, 1.1, 1.5)]
    summary = {"REST": {"p50": 2.1}, "gRPC": {"p50": 2.8}}
    text = serving._floor_text(results, 0.9, summary)
    assert "waits 0.90 ms" in text
    assert "REST floor 1.10 ms, gRPC floor 1.40 ms; gRPC minus REST +0.30 ms on the floor" in text
    assert "+0.70 ms through the template" in text
