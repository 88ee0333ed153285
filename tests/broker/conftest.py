"""A private RabbitMQ node for the differential suite (recipe: /work/shared/real-servers.md).

One node per session, bound to 127.0.0.1 on free ports, with its own data directory; stopped
(with the epmd it started) at the end. Skipped, with the reason, only where ``rabbitmq-server``
is not installed; ``.ci/run`` installs it, so CI never skips.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _sbin() -> Path | None:
    try:
        out = subprocess.run(["dpkg", "-L", "rabbitmq-server"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    for line in out.splitlines():
        if "/rabbitmq_server-" in line and line.endswith("/sbin/rabbitmq-server"):
            return Path(line).parent
    return None


def _epmd_pids() -> set[int]:
    out = subprocess.run(["pgrep", "-x", "epmd"], capture_output=True, text=True).stdout
    return {int(p) for p in out.split()}


@pytest.fixture(scope="session")
def amqp_url() -> Iterator[str]:
    """``amqp://`` URL of a private RabbitMQ node started for this session."""
    pytest.importorskip("pika", reason="the differential suite needs the 'broker' extra (pika)")
    sbin = _sbin()
    if sbin is None or shutil.which("rabbitmq-server") is None:
        pytest.skip("rabbitmq-server is not installed (apt-get install rabbitmq-server; .ci/run does)")
    d = Path(tempfile.mkdtemp(prefix="simroll-rabbit-"))
    for sub in ("mnesia", "log", "home"):
        (d / sub).mkdir()
    port, dist = _free_port(), _free_port()
    (d / "enabled_plugins").write_text("[].\n")
    (d / "env.conf").write_text("")
    (d / "rabbitmq.conf").write_text(
        f"listeners.tcp.1 = 127.0.0.1:{port}\nloopback_users.guest = true\nlog.console = false\n"
    )
    node = f"simroll-{os.getpid()}@localhost"
    env = dict(
        os.environ,
        HOME=str(d / "home"),
        RABBITMQ_NODENAME=node,
        RABBITMQ_NODE_IP_ADDRESS="127.0.0.1",
        RABBITMQ_NODE_PORT=str(port),
        RABBITMQ_DIST_PORT=str(dist),
        RABBITMQ_MNESIA_BASE=str(d / "mnesia"),
        RABBITMQ_LOG_BASE=str(d / "log"),
        RABBITMQ_ENABLED_PLUGINS_FILE=str(d / "enabled_plugins"),
        RABBITMQ_CONF_ENV_FILE=str(d / "env.conf"),
        RABBITMQ_CONFIG_FILE=str(d / "rabbitmq.conf"),
        ERL_EPMD_ADDRESS="127.0.0.1",
        RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}",
    )
    epmd_before = _epmd_pids()
    out = open(d / "out", "wb")
    proc = subprocess.Popen(
        [str(sbin / "rabbitmq-server")], env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
    )
    ctl = [str(sbin / "rabbitmqctl"), "-n", node, "-q"]
    try:
        deadline = time.monotonic() + 120
        # await_startup exits 69 at once until the node has registered with epmd: retry it
        while subprocess.run(ctl + ["await_startup", "--timeout", "60"], env=env, capture_output=True).returncode:
            if time.monotonic() > deadline:
                raise RuntimeError(f"rabbitmq-server did not start: {(d / 'out').read_text()[-2000:]}")
            # await_startup failed at once (the node is not registered with epmd yet): wait on the
            # server process itself before the next try, so that its death ends the wait at once
            try:
                proc.wait(timeout=0.5)
            except subprocess.TimeoutExpired:
                continue
            raise RuntimeError(f"rabbitmq-server exited: {(d / 'out').read_text()[-2000:]}")
        yield f"amqp://guest:guest@127.0.0.1:{port}/"
    finally:
        subprocess.run(ctl + ["stop"], env=env, capture_output=True)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        for pid in _epmd_pids() - epmd_before:  # the epmd this node started
            os.kill(pid, signal.SIGTERM)
        out.close()
        shutil.rmtree(d, ignore_errors=True)
