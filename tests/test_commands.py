"""Commands on ``cmd/#`` against a real Mosquitto: checked for size, schema and bed, and
rate-limited before they reach the main loop; refused ones are counted by kind and logged once
per kind."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest

from device.config import MqttConfig, StateConfig
from device.sinks.base import Ack
from device.sinks.mqtt import COMMAND_BURST, MqttSink


def _until(pred, timeout_s: float) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.02)
    return bool(pred())


def test_commands_checked_rate_limited_counted_and_logged_once(
    tmp_path: Path, mosquitto, mqtt_listener, caplog: pytest.LogCaptureFixture
) -> None:  # type: ignore[no-untyped-def]
    sink = MqttSink(
        MqttConfig(broker=mosquitto.url), "cmd1", StateConfig(dir=str(tmp_path / "state"))
    )
    sink.start()
    ward = mqtt_listener(mosquitto, "bedside/cmd1/status")
    got: list[Ack] = []
    try:
        assert _until(lambda: sink.publisher.connected, 10)
        assert ward.wait_for(lambda ms: len(ms) >= 1, 10)  # subscribed to cmd/# by now
        bad = [
            ("cmd/ack", "not json"),
            ("cmd/ack", '{"id": 7}'),
            ("cmd/ack", '{"id": "cmd9-hr_high-3"}'),  # another bed's alarm
            ("cmd/ack", '{"id": "' + "x" * 2000 + '"}'),  # too large
            ("cmd/reboot", "{}"),
        ]
        with caplog.at_level(logging.WARNING, logger="bedside.mqtt"):
            for leaf, payload in bad * 2:
                ward.publish(f"bedside/cmd1/{leaf}", payload)
            ward.publish("bedside/cmd1/cmd/ack", '{"id": "cmd1-hr_high-12"}')
            assert _until(lambda: (got.extend(sink.poll()), len(got))[1] >= 1, 10)
            assert got == [Ack("cmd1-hr_high-12")]
            # a flood: far more than the burst allows, as fast as the broker delivers
            for _ in range(3):
                for i in range(COMMAND_BURST * 2):
                    ward.client.publish("bedside/cmd1/cmd/ack", f'{{"id": "cmd1-x-{i}"}}', qos=0)
            assert _until(
                lambda: (got.extend(sink.poll()), sink.rejected.get("rate_limited", 0))[1] > 0, 10
            )
        assert sink.rejected["bad_schema"] == 4 and sink.rejected["other_bed"] == 2
        assert sink.rejected["too_large"] == 2 and sink.rejected["unknown_topic"] == 2
        accepted = len(got) - 1
        assert accepted < COMMAND_BURST * 6  # the flood was cut short
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        for kind in ("expected JSON", "not an alarm of bed", "bytes", "cmd/reboot", "faster than"):
            assert sum(kind in w for w in warnings) == 1, (kind, warnings)  # once per kind
        counters = sink.counters()
        assert counters["commands_rejected"]["rate_limited"] == counters["commands_rate_limited"]
    finally:
        sink.stop()
