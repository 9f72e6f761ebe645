"""Signature checks of txs on their way into the mempool, in worker processes.

Not threads: PyNaCl releases the GIL while libsodium verifies, but a thread needs the GIL back
after every signature, and while the event loop runs Python code it gets it only once per switch
interval (5 ms). Measured here: two verifying threads do ~17,800 verifications/s beside an idle
event loop and ~520/s beside a busy one, so under load a batch of txs waited 100-250 ms to be
admitted and missed the next block. Worker processes share no GIL with the node.

Each worker (node.verify_worker) is a plain child process fed through its stdin and stdout, one
request at a time: no pickling, no helper threads in the node, and nothing of the node's main
module imported again. Workers run at a lower priority (nice), so that on a busy machine block
production, import and votes, which finality waits for, get the cores first. A worker exits when
its stdin closes: when the node stops, and when it dies without stopping (`kill -9`).
"""
import asyncio
import os
import signal
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REQUEST_TIMEOUT_S = 10.0  # a request is ~100 signatures, milliseconds of work even on a busy machine
START_TIMEOUT_S = 60.0  # a new worker starts Python and imports libsodium's bindings


class VerifyError(Exception):
    """A worker died or answered nonsense: verify those signatures some other way."""


class _Worker:
    def __init__(self, proc: asyncio.subprocess.Process):
        self.proc = proc
        self.loop = asyncio.get_running_loop()  # its pipes work on this loop only
        self.lock = asyncio.Lock()  # one request at a time on its pipes
        self.abandoned = False

    async def _exchange(self, payload: bytes) -> bytes:
        self.proc.stdin.write(len(payload).to_bytes(4, "big") + payload)
        await self.proc.stdin.drain()
        size = int.from_bytes(await self.proc.stdout.readexactly(4), "big")
        return await self.proc.stdout.readexactly(size)

    def usable(self) -> bool:
        return (not self.abandoned and self.proc.returncode is None
                and self.loop is asyncio.get_running_loop())

    def abandon(self) -> None:
        """For a worker that is stuck, or of an event loop that is gone (a node restarted in one
        process)."""
        self.abandoned = True
        try:
            os.kill(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    async def verify(self, items: list[tuple[bytes, bytes, bytes]], timeout_s: float | None = None) -> list[bool]:
        timeout_s = REQUEST_TIMEOUT_S if timeout_s is None else timeout_s
        payload = b"".join(key + signature + len(message).to_bytes(2, "big") + message
                           for key, message, signature in items)
        async with self.lock:
            try:
                answer = await asyncio.wait_for(self._exchange(payload), timeout_s)
            except asyncio.TimeoutError:  # (an OSError too, so first)
                self.abandon()  # stuck (stopped?): its pipes are out of step now; a new one replaces it
                raise VerifyError(f"verify worker {self.proc.pid} did not answer in {timeout_s} s") from None
            except (OSError, asyncio.IncompleteReadError) as e:
                self.abandon()
                raise VerifyError(f"verify worker {self.proc.pid} is gone: {type(e).__name__}") from None
        if len(answer) != len(items):
            self.abandon()
            raise VerifyError(f"verify worker {self.proc.pid} answered {len(answer)} of {len(items)}")
        return [b == 1 for b in answer]


class VerifyPool:
    """`count` verifying worker processes, started on first use (or by `start`); a worker that
    died is replaced on the next use."""

    def __init__(self, count: int):
        self.count = count
        self._workers: list[_Worker | None] = [None] * count
        self._stopped = False  # by `stop`, until `start`: no worker is started meanwhile

    async def _worker(self, i: int) -> _Worker:
        worker = self._workers[i]
        if worker is None or not worker.usable():
            if worker is not None and worker.proc.returncode is None:
                worker.abandon()
            if self._stopped:
                raise VerifyError("the verify pool is stopped")
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "node.verify_worker", cwd=ROOT,
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
            worker = _Worker(proc)
            if self._stopped:  # stopped while this one was starting: nothing would stop it
                worker.abandon()
                await proc.wait()  # reaped, its pipes closed on this loop
                raise VerifyError("the verify pool is stopped")
            self._workers[i] = worker
            await worker.verify([], START_TIMEOUT_S)  # answered once it runs (at its priority)
        return worker

    async def start(self) -> None:
        self._stopped = False
        for i in range(self.count):
            await self._worker(i)

    async def verify(self, chunks: list[list[tuple[bytes, bytes, bytes]]]) -> list[list[bool]]:
        """Each chunk of (public key, message, signature) on its own worker, all at once."""
        workers = [await self._worker(i % self.count) for i in range(len(chunks))]
        return await asyncio.gather(*(w.verify(c) for w, c in zip(workers, chunks)))

    @property
    def pids(self) -> list[int]:
        return [w.proc.pid for w in self._workers
                if w is not None and not w.abandoned and w.proc.returncode is None]

    async def stop(self) -> None:
        self._stopped = True
        for worker in self._workers:
            if worker is not None and worker.usable():
                worker.proc.stdin.close()
                try:
                    await asyncio.wait_for(worker.proc.wait(), REQUEST_TIMEOUT_S)
                except asyncio.TimeoutError:
                    worker.abandon()
            elif worker is not None and worker.proc.returncode is None:
                worker.abandon()
        self._workers = [None] * self.count
