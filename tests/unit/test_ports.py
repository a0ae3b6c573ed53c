"""``free_port`` picks ports no outgoing connection can take before the caller binds them."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from server import ports


def _range_file(tmp_path: Path, low: int, high: int) -> Path:
    path = tmp_path / "ip_local_port_range"
    path.write_text(f"{low}\t{high}\n")
    return path


def test_a_port_lies_below_the_ephemeral_range_and_is_bindable() -> None:
    low, _ = ports.ephemeral_range()
    for _ in range(50):
        port = ports.free_port()
        assert ports.LOWEST_PORT <= port < low
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))


def _free_pair() -> int:
    """The lower of two neighbouring loopback ports that are both free now."""
    for port in range(ports.LOWEST_PORT, ports.LOWEST_PORT + 2000, 2):
        try:
            with socket.socket() as a, socket.socket() as b:
                a.bind(("127.0.0.1", port))
                b.bind(("127.0.0.1", port + 1))
        except OSError:
            continue
        return port
    raise AssertionError("no two neighbouring free ports")


def test_a_taken_port_is_passed_over(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = _free_pair()
    monkeypatch.setattr(ports, "LOWEST_PORT", first)
    monkeypatch.setattr(ports, "_MIN_CHOICES", 2)
    range_file = _range_file(tmp_path, first + 2, 65000)
    with socket.socket() as held:
        held.bind(("127.0.0.1", first))
        assert {ports.free_port(range_file) for _ in range(20)} == {first + 1}


def test_a_narrow_range_falls_back_to_the_kernel_pick(tmp_path: Path) -> None:
    # Too few ports below the ephemeral range to choose among: the kernel's own pick, still free.
    range_file = _range_file(tmp_path, ports.LOWEST_PORT + 10, 65000)
    port = ports.free_port(range_file)
    assert port >= ports.ephemeral_range()[0]
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))


def test_an_unreadable_range_file_means_the_linux_default(tmp_path: Path) -> None:
    assert ports.ephemeral_range(tmp_path / "missing") == (32768, 60999)
    assert ports.ephemeral_range(_range_file(tmp_path, 40000, 50000)) == (40000, 50000)
