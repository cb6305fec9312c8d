"""Runs Debian's ``haproxy`` as a real process with a generated configuration.

The process runs in the foreground mode (``-db``) in its own session
(``detached_process``), so it outlives the command that started it (``runeshift services
up``) and is stopped by pid. Its config and
log live in the state folder it is given. The configuration is checked (``haproxy -c``)
before starting, so a bad one fails with HAProxy's own message.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from runeshift.sandbox.server_process import find_binary, port_open, run_checked, wait_until
from services.proxy import detached_process
from services.proxy.haproxy_config import ProxyConfig, render_config
from services.proxy.runtime_client import HAProxyRuntime

INSTALL_HINT = "install it with 'apt-get install -y haproxy' (scripts/setup.sh does)"


@dataclass(frozen=True)
class HAProxyProcess:
    """A started haproxy: its pid, config, and where it listens."""

    pid: int
    config: ProxyConfig
    config_path: Path
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://{self.config.host}:{self.config.frontend_port}"

    def runtime(self) -> HAProxyRuntime:
        return HAProxyRuntime(self.config.host, self.config.runtime_port)

    @property
    def alive(self) -> bool:
        return not detached_process.exited(self.pid)

    def stop(self, timeout: float = 10.0) -> None:
        detached_process.stop(self.pid, timeout=timeout)


def haproxy_binary() -> Path:
    return find_binary(
        "haproxy", search=("/usr/sbin", "/usr/local/sbin"), install_hint=INSTALL_HINT
    )


def start_haproxy(
    config: ProxyConfig, state_dir: Path, *, timeout_s: float = 15.0
) -> HAProxyProcess:
    """Write the config into ``state_dir``, check it, start haproxy and wait for both ports."""
    binary = haproxy_binary()
    state_dir.mkdir(parents=True, exist_ok=True)
    config_path = state_dir / "haproxy.cfg"
    log_path = state_dir / "haproxy.log"
    config_path.write_text(render_config(config))
    run_checked([str(binary), "-c", "-q", "-f", str(config_path)], what="haproxy -c (config check)")
    pid = detached_process.spawn([str(binary), "-db", "-f", str(config_path)], log_path)
    started = HAProxyProcess(pid, config, config_path, log_path)
    wait_until(
        lambda: (
            not detached_process.exited(pid)
            and port_open(config.frontend_port)
            and port_open(config.runtime_port)
        ),
        timeout=timeout_s,
        what=f"haproxy listening on {config.host}:{config.frontend_port}",
        log=log_path,
    )
    return started
