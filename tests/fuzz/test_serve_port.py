"""`deepvision serve` on a port it cannot bind: one line and exit 2 before the model loads, instead of
uvicorn's own error line and exit 3."""

from __future__ import annotations

import socket

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")


def test_a_port_in_use_is_one_line(tmp_path, run_cli):
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        code, out, err = run_cli("serve", tmp_path / "never-loaded", "--port", port)
    assert code == 2 and out == ""
    assert err == (f"deepvision serve: error: port {port} on 127.0.0.1 is already in use; stop what holds it "
                   f"or choose another with --port\n")


@pytest.mark.parametrize(("host", "message"), [
    ("no-such-host.invalid", "is not an address or name this machine can resolve"),
    ("192.0.2.1", "--host 192.0.2.1 is not an address of this machine"),  # TEST-NET-1, never local
])
def test_a_host_that_cannot_be_bound_is_one_line(tmp_path, run_cli, host, message):
    code, _, err = run_cli("serve", tmp_path, "--host", host, "--port", "8000")
    assert code == 2 and err.count("\n") == 1 and message in err, err


def test_a_free_port_passes_the_check():
    from deepvision.apps.serve.app import check_port

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    check_port("127.0.0.1", port)  # released at once: binding it again works
    with socket.socket() as again:
        again.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        again.bind(("127.0.0.1", port))
