"""The node process: a NodeService behind its HTTP intake, served by uvicorn until a signal or
until the node stops itself (node.health), and then the process's exit status."""
import gc
import logging
import os
import sys
import threading

from node.config import NodeConfig
from node.health import EXIT_FATAL
from node.service import NodeService

FATAL_EXIT_GRACE_S = 10.0  # a node stopping itself gets this long to shut down cleanly
STARTUP_FAILURE = 3  # uvicorn's exit status when the app did not start


def run_node(config: NodeConfig) -> None:
    """Run a node until SIGINT/SIGTERM (uvicorn handles the signals and shuts down cleanly), or
    until it stops itself (node.health): then it shuts down the same way and the process exits
    with EXIT_FATAL, for a supervisor to restart it."""
    import uvicorn

    from node.api import create_app
    from node.intake import BodyBudget, Intake, IntakeLimits, make_protocol, resolve_peer_hosts

    logging.basicConfig(level=config.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    service = NodeService(config)
    # connection caps, deadlines and the body budget (node.intake) replace uvicorn's
    # limit_concurrency, which counted idle sockets and peers' connections alike
    peer_hosts = resolve_peer_hosts(config.peers)
    intake = Intake(IntakeLimits.from_config(config), peer_hosts)
    service.intake = intake
    # sync pages too: a peer whose URL names a host is known by the addresses it connects from
    service.net.sync_budget.peer_hosts |= peer_hosts
    app = BodyBudget(create_app(service), intake)
    gc.freeze()  # what start-up built lives as long as the node: keep it out of every collection
    gc.set_threshold(50_000, 20, 20)
    server = uvicorn.Server(uvicorn.Config(
        app, host=config.host, port=config.port, log_level="warning", access_log=False, loop="uvloop",
        http=make_protocol(intake), timeout_graceful_shutdown=2))

    def shut_down() -> None:
        server.should_exit = True  # uvicorn's main loop sees it within 0.1 s
        # and should a clean shutdown hang (a stuck request, a stuck worker), the process still ends
        backstop = threading.Timer(FATAL_EXIT_GRACE_S, os._exit, (EXIT_FATAL,))
        backstop.daemon = True
        backstop.start()

    service.health.on_fatal = shut_down
    server.run()
    if service.health.fatal is not None:
        sys.exit(EXIT_FATAL)
    if not server.started:  # as uvicorn.run: the app did not start (its error is logged)
        sys.exit(STARTUP_FAILURE)
