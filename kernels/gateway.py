"""Kernels on a Jupyter Kernel Gateway or Enterprise Gateway, through jupyter-server's client.

This is how a deployment moves execution off the web nodes: the gateway starts, confines and
hosts the kernels; this server only talks to them over HTTP and WebSocket. Sandboxing there is
the gateway's deployment's job (Enterprise Gateway runs kernels in containers or pods).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from jupyter_server.gateway.gateway_client import GatewayClient
from jupyter_server.gateway.managers import GatewayKernelManager

from kernels.pool import KernelHandle


class GatewayLauncher:
    """Starts one kernel on the gateway at ``url`` per call, as ``KernelLauncher`` does locally."""

    def __init__(self, url: str, runtime_dir: Path, timeout_s: float) -> None:
        # jupyter-server reads the gateway's address from its configurable singleton.
        GatewayClient.clear_instance()
        GatewayClient.instance(url=url.rstrip("/"), request_timeout=timeout_s)
        self.url = url
        self.runtime_dir = runtime_dir
        self.timeout_s = timeout_s

    async def start(self, spec_name: str) -> KernelHandle:
        manager = GatewayKernelManager(kernel_name=spec_name)  # type: ignore[no-untyped-call]
        await manager.start_kernel(kernel_name=spec_name)
        try:
            client = manager.client()  # type: ignore[no-untyped-call]
            await client.start_channels()
            await client.wait_for_ready(timeout=self.timeout_s)
        except Exception:
            await manager.shutdown_kernel(now=True)
            raise
        # A local folder keeps the handle's life cycle the same as a local kernel's.
        folder = Path(tempfile.mkdtemp(prefix="gateway-", dir=self.runtime_dir))
        return KernelHandle(spec_name, manager, client, folder, None)
