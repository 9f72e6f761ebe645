"""Logs and signals, on real node processes: `log_format = "json"` writes one object per line
with stable fields, uvicorn's lines included; `log_file` is reopened on SIGHUP (logrotate);
per-block lines are not at INFO; SIGTERM stops the node cleanly with exit status 0; `/metrics`
has the process collector's series. In process: the JSON fields, and the minute summary."""
import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
import time
from datetime import datetime

import httpx
import pytest

from node.logs import JsonFormatter, log_summaries
from tests.conftest import make_genesis, wait_until
from tests.test_e2e_single import ROOT, free_port


def test_a_json_line_has_the_stable_fields_then_the_extra_ones():
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord("node", logging.WARNING, __file__, 1, "slot %d failed", (7,), sys.exc_info())
    record.height = 12
    record.peer = {"key": b"x"}  # bytes are not JSON: written as their str
    doc = json.loads(JsonFormatter().format(record))
    assert list(doc)[:4] == ["ts", "level", "logger", "msg"]
    assert (doc["level"], doc["logger"], doc["msg"], doc["height"]) == ("WARNING", "node", "slot 7 failed", 12)
    assert doc["ts"].endswith("Z") and datetime.fromisoformat(doc["ts"].replace("Z", "+00:00")).tzinfo
    assert "ValueError: boom" in doc["exc"] and doc["peer"] == {"key": "b'x'"}


class FakeService:
    def __init__(self):
        self.height, self.final = 10, 8
        self.metrics = type("M", (), {"final_txs": 100})()

    def status(self):
        return {"head": {"height": self.height}, "final": {"height": self.final}, "mempool": 3,
                "peers": [{"up": True}, {"up": False}], "syncing": False, "stalled": False}


def test_the_summary_says_what_became_final_since_the_last_one(caplog):
    service = FakeService()
    caplog.set_level(logging.INFO, logger="node")

    async def run():
        task = asyncio.create_task(log_summaries(service, interval_s=0.2))
        await asyncio.sleep(0.1)
        service.height, service.final, service.metrics.final_txs = 15, 13, 160
        await asyncio.sleep(0.2)
        task.cancel()

    asyncio.run(run())
    [record] = [r for r in caplog.records if r.getMessage().startswith("summary:")]
    assert record.levelno == logging.INFO
    assert record.getMessage() == ("summary: height 15, final 13 (+5 blocks, +60 txs final), mempool 3, "
                                   "peers 1/2 up")
    assert (record.height, record.final_height, record.blocks_finalized, record.txs_finalized,
            record.mempool, record.peers, record.peers_up) == (15, 13, 5, 60, 3, 2, 1)


def start_node(tmp, port, log_file, name="node"):
    (tmp / "genesis.json").write_text(json.dumps(make_genesis().to_json()))
    config = tmp / f"{name}.toml"
    config.write_text(f'[node]\ndata_dir = "{name}-data"\nport = {port}\ngenesis = "genesis.json"\n'
                      f'key_file = ""\nlog_format = "json"\nlog_file = "{log_file}"\n')
    out = open(tmp / f"{name}.out", "wb")
    proc = subprocess.Popen([sys.executable, os.path.join(ROOT, "cli.py"), "node", "run", "--config", str(config)],
                            stdout=out, stderr=subprocess.STDOUT)
    out.close()
    return proc


def json_lines(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture
def running(tmp_path):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = start_node(tmp_path, port, "logs/node.log")  # (relative: from the config's folder)
    (tmp_path / "logs").mkdir()

    def up():
        assert proc.poll() is None, (tmp_path / "node.out").read_text()
        try:
            return httpx.get(url + "/v1/status", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False
    try:
        wait_until(up, 30, "the node to answer")
        yield tmp_path, url, proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def test_json_logs_to_a_file_reopened_on_sighup_and_sigterm_exits_0(running):
    tmp, url, proc = running
    log_file = tmp / "logs" / "node.log"
    metrics = httpx.get(url + "/metrics", timeout=5).text
    assert "process_resident_memory_bytes " in metrics and "python_info{" in metrics
    assert "process_cpu_seconds_total " in metrics
    time.sleep(1.0)  # a few blocks: none of them is logged at INFO
    os.rename(log_file, tmp / "logs" / "node.log.1")  # as logrotate does
    proc.send_signal(signal.SIGHUP)
    wait_until(lambda: log_file.exists() and "reopened" in log_file.read_text(), 10, "the log file reopened")
    assert proc.poll() is None  # SIGHUP did not stop it
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(15) == 0, (tmp / "node.out").read_text()
    old, new = json_lines(tmp / "logs" / "node.log.1"), json_lines(log_file)
    for doc in old + new:
        assert list(doc)[:4] == ["ts", "level", "logger", "msg"], doc
    assert [d["msg"] for d in new] == [f"SIGHUP: log file {log_file} reopened", "node stopped cleanly"]
    assert not any("block" in d["msg"] and d["level"] == "INFO" for d in old + new), old
    assert (tmp / "node.out").read_text().strip().startswith("community-chain node")  # the banner only


def test_uvicorns_lines_are_in_the_nodes_format(running):
    tmp, url, proc = running
    port = int(url.rsplit(":", 1)[1])
    second = start_node(tmp, port, "second.log", name="second")  # the same port: bind fails
    assert second.wait(30) == 3, (tmp / "second.out").read_text()
    lines = json_lines(tmp / "second.log")
    assert any(d["logger"] == "uvicorn.error" and d["level"] == "ERROR" and "address already in use" in d["msg"]
               for d in lines), lines
