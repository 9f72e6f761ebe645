"""The node's logging: one handler on the root logger for the node's own loggers and uvicorn's,
in text or JSON lines, to stderr or to a file that SIGHUP reopens (logrotate moves it, the node
reopens the same name); and a summary line once a minute.

A JSON line is one object with stable fields: `ts` (ISO-8601, UTC, milliseconds), `level`,
`logger`, `msg` (the formatted message), then the record's `extra` fields, and `exc` with the
traceback if there was one. Per-block lines are DEBUG; at INFO a running node says little more
than its minute summary, warnings, and what it stopped for.
"""
import asyncio
import json
import logging
import sys
from datetime import datetime, timezone

log = logging.getLogger("node")
SUMMARY_INTERVAL_S = 60.0
TEXT_FORMAT = "%(asctime)s %(name)s %(levelname)s %(message)s"  # (extra fields: in JSON only)

# what every LogRecord carries: anything else on a record came from `extra=`
_RECORD_FIELDS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


def extra_fields(record: logging.LogRecord) -> dict:
    return {k: v for k, v in vars(record).items() if k not in _RECORD_FIELDS and not k.startswith("_")}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc = {"ts": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds")
               .replace("+00:00", "Z"),
               "level": record.levelname, "logger": record.name, "msg": record.getMessage()}
        for k, v in extra_fields(record).items():
            doc.setdefault(k, v)  # (an extra named like a stable field does not replace it)
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc, default=str, separators=(",", ":"))


class ReopenableFileHandler(logging.FileHandler):
    """A log file that `reopen` closes and opens again by name, under the handler's lock."""

    def reopen(self) -> None:
        self.acquire()
        try:
            if self.stream is not None:
                self.stream.close()
            self.stream = self._open()
        finally:
            self.release()


def configure_logging(config) -> logging.Handler:
    """One handler on the root logger, for every logger of the process (uvicorn's too: run_node
    gives uvicorn no logging config of its own, so its loggers propagate here)."""
    if config.log_file:
        handler: logging.Handler = ReopenableFileHandler(config.log_file, encoding="utf-8")
    else:
        handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if config.log_format == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(config.log_level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        uv = logging.getLogger(name)
        uv.handlers.clear()
        uv.propagate = True
    return handler


def reopen_log(handler: logging.Handler) -> None:
    """SIGHUP: reopen the log file (logrotate has moved it), and say so in the new one."""
    if isinstance(handler, ReopenableFileHandler):
        handler.reopen()
        log.info("SIGHUP: log file %s reopened", handler.baseFilename)
    else:
        log.info("SIGHUP: logging to stderr, nothing to reopen")


def summarize(status: dict, final_txs: int, before: dict | None) -> tuple[str, dict]:
    """The minute's summary line and its fields, from `service.status()` now, the count of txs
    finalized so far, and the fields of the previous summary (None: the first)."""
    peers = status["peers"]
    fields = {"height": status["head"]["height"], "final_height": status["final"]["height"],
              "final_txs": final_txs, "mempool": status["mempool"], "peers": len(peers),
              "peers_up": sum(1 for p in peers if p.get("up"))}
    fields["blocks_finalized"] = fields["final_height"] - (before or fields)["final_height"]
    fields["txs_finalized"] = final_txs - (before or fields)["final_txs"]
    text = ("height %(height)d, final %(final_height)d (+%(blocks_finalized)d blocks, "
            "+%(txs_finalized)d txs final), mempool %(mempool)d, peers %(peers_up)d/%(peers)d up" % fields)
    if status.get("syncing"):
        text += ", syncing"
    if status.get("stalled"):
        text += ", STALLED"
    return text, fields


async def log_summaries(service, interval_s: float = SUMMARY_INTERVAL_S) -> None:
    """Every `interval_s`, one INFO line: heights, what became final since the last line,
    mempool and peers. Runs until cancelled; a failure to read the status skips that line."""
    before = summarize(service.status(), service.metrics.final_txs, None)[1]  # the baseline
    while True:
        await asyncio.sleep(interval_s)
        try:
            text, fields = summarize(service.status(), service.metrics.final_txs, before)
        except (KeyError, TypeError, AttributeError) as e:  # (never a reason to end the task)
            log.warning("summary skipped: %s: %s", type(e).__name__, e)
            continue
        log.info("summary: %s", text, extra=fields)
        before = fields
