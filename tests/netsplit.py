"""Network partitions for multi-process tests: every directed link between nodes goes through its
own TCP forwarder on loopback, which the test opens or cuts (as toxiproxy does), so the nodes talk
over real sockets and see real connection failures. A cut link closes its listening socket, so new
connections are refused, and aborts the connections it carries."""
import asyncio
import re
import threading
from pathlib import Path

from node import testnet
from node.testnet import free_port_range, prepare


class _Link:
    def __init__(self, listen_port: int, target_port: int):
        self.listen_port, self.target_port = listen_port, target_port
        self.server: asyncio.Server | None = None
        self.transports: set[asyncio.Transport] = set()

    async def open(self) -> None:
        if self.server is None:
            self.server = await asyncio.start_server(self._carry, "127.0.0.1", self.listen_port,
                                                     reuse_address=True)

    async def cut(self) -> None:
        if self.server is not None:
            self.server.close()
            self.server = None
        for transport in list(self.transports):
            transport.abort()
        self.transports.clear()

    async def _carry(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.transport.abort()
            return
        pair = {writer.transport, up_writer.transport}
        self.transports |= pair
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        self.transports -= pair


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.transport.abort()


class Links:
    """One forwarder per ordered pair (i, j) of nodes, listening on its own port and forwarding to
    node j's port, run on an event loop in a background thread. Node i reaches node j at
    `url(i, j)`."""

    def __init__(self, node_ports: list[int], first_link_port: int):
        n = len(node_ports)
        self._port = {}
        self._links = {}
        for i in range(n):
            for j in range(n):
                if i != j:
                    self._port[i, j] = first_link_port + len(self._port)
                    self._links[i, j] = _Link(self._port[i, j], node_ports[j])
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self.heal()

    def url(self, i: int, j: int) -> str:
        return f"http://127.0.0.1:{self._port[i, j]}"

    def _run(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)

    def partition(self, *groups) -> None:
        """Open the links inside each group and cut every link between groups."""
        side = {i: g for g, members in enumerate(groups) for i in members}
        async def apply():
            for (i, j), link in self._links.items():
                await (link.open() if side.get(i) == side.get(j) else link.cut())
        self._run(apply())

    def heal(self) -> None:
        async def apply():
            for link in self._links.values():
                await link.open()
        self._run(apply())

    def close(self) -> None:
        async def apply():
            for link in self._links.values():
                await link.cut()
        self._run(apply())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


def start_linked_testnet(directory: Path, validators: int) -> tuple[testnet.Testnet, Links]:
    """A testnet of `validators` (0.4 s slots), started, whose nodes reach each other only
    through the returned Links; each node's config lists its peers at their links' ports."""
    base = free_port_range(validators + validators * (validators - 1))
    prepare(directory, validators, base, block_interval_ms=400)
    links = Links([base + i for i in range(validators)], base + validators)
    for i in range(validators):
        conf = directory / f"node-{i}" / "config.toml"
        peers = ", ".join(f'"{links.url(i, j)}"' for j in range(validators) if j != i)
        conf.write_text(re.sub(r"(?m)^peers = .*$", f"peers = [{peers}]", conf.read_text()))
    net = testnet.Testnet(directory)
    net.start_all()
    return net, links
