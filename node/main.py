"""The node process: a NodeService behind its HTTP intake, served by uvicorn until a signal or
until the node stops itself (node.health), and then the process's exit status.

Signals: SIGTERM and SIGINT shut the node down cleanly and the process exits 0; SIGHUP reopens
the log file (node.logs), for logrotate."""
import asyncio
import gc
import logging
import os
import signal
import sys
import threading

from node.config import NodeConfig
from node.health import EXIT_FATAL
from node.logs import SUMMARY_INTERVAL_S, configure_logging, log_summaries, reopen_log
from node.service import NodeService

FATAL_EXIT_GRACE_S = 10.0  # a node stopping itself gets this long to shut down cleanly
STARTUP_FAILURE = 3  # uvicorn's exit status when the app did not start


def run_node(config: NodeConfig, summary_interval_s: float = SUMMARY_INTERVAL_S) -> None:
    """Run a node until SIGINT/SIGTERM (uvicorn handles the signals and shuts down cleanly; the
    process then exits 0), or until it stops itself (node.health): then it shuts down the same
    way and the process exits with EXIT_FATAL, for a supervisor to restart it."""
    import uvicorn

    from node.api import create_app
    from node.intake import BodyBudget, Intake, IntakeLimits, make_protocol, resolve_peer_hosts

    log_handler = configure_logging(config)
    service = NodeService(config)
    # connection caps, deadlines and the body budget (node.intake) replace uvicorn's
    # limit_concurrency, which counted idle sockets and peers' connections alike
    peer_hosts = resolve_peer_hosts(config.peers)
    intake = Intake(IntakeLimits.from_config(config), peer_hosts)
    service.intake = intake
    # sync pages too: a peer whose URL names a host is known by the addresses it connects from
    service.net.sync_budget.peer_hosts |= peer_hosts
    app = WithBackground(BodyBudget(create_app(service), intake), service, log_handler, summary_interval_s)
    gc.freeze()  # what start-up built lives as long as the node: keep it out of every collection
    gc.set_threshold(50_000, 20, 20)
    server = uvicorn.Server(uvicorn.Config(
        app, host=config.host, port=config.port, log_level="warning", access_log=False, loop="uvloop",
        http=make_protocol(intake), timeout_graceful_shutdown=2,
        log_config=None))  # uvicorn's loggers go to the node's handler (node.logs), in its format

    def shut_down() -> None:
        server.should_exit = True  # uvicorn's main loop sees it within 0.1 s
        # and should a clean shutdown hang (a stuck request, a stuck worker), the process still ends
        backstop = threading.Timer(FATAL_EXIT_GRACE_S, os._exit, (EXIT_FATAL,))
        backstop.daemon = True
        backstop.start()

    service.health.on_fatal = shut_down

    def on_signal(signum, frame) -> None:
        # uvicorn's own handler runs while it serves; once it has shut down it raises the signal
        # again to the handler it found, which is this one: the shutdown is done, exit 0
        server.should_exit = True

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # until the loop handles it (WithBackground)
    server.run()
    if service.health.fatal is not None:
        sys.exit(EXIT_FATAL)
    if not server.started:  # as uvicorn.run: the app did not start (its error is logged)
        sys.exit(STARTUP_FAILURE)
    logging.getLogger("node").info("node stopped cleanly")


class WithBackground:
    """The ASGI app, plus what runs beside the service on its loop: the minute summary
    (node.logs) from startup until shutdown, and SIGHUP reopening the log file."""

    def __init__(self, app, service: NodeService, log_handler: logging.Handler, summary_interval_s: float):
        self.app, self.service = app, service
        self.log_handler, self.summary_interval_s = log_handler, summary_interval_s
        self.task: asyncio.Task | None = None

    async def __call__(self, scope, receive, send):
        if scope["type"] != "lifespan":
            return await self.app(scope, receive, send)

        async def on_send(message):
            if message["type"] == "lifespan.startup.complete":
                loop = asyncio.get_running_loop()
                loop.add_signal_handler(signal.SIGHUP, reopen_log, self.log_handler)
                # (not watched by node.health: a node whose summary failed goes on producing)
                self.task = loop.create_task(log_summaries(self.service, self.summary_interval_s))
            await send(message)

        async def on_receive():
            message = await receive()
            if message["type"] == "lifespan.shutdown" and self.task is not None:
                self.task.cancel()
                try:
                    await self.task
                except asyncio.CancelledError:
                    pass
            return message

        await self.app(scope, on_receive, on_send)
