"""The README's CLI walkthrough runs as written, top to bottom, with bash: its first block against a
real node of the embedded development chain (`node run` with no key file, as `./run.sh` starts
it), its governance block against a real 4-validator testnet. Only the node's address differs
(COMMUNITY_CHAIN_NODE, so that the test needs no fixed port)."""
import os
import re
import subprocess
import sys
from pathlib import Path

from core.wallet import Client, NodeUnreachable
from node import testnet
from node.testnet import free_port_range, prepare
from tests.test_multinode import finals, wait_until
from tests.test_newcomer import is_ignored

ROOT = Path(__file__).resolve().parent.parent


def walkthrough(tag: str) -> str:
    text = (ROOT / "README.md").read_text()
    found = re.search(rf"<!-- walkthrough: {tag} -->\n```bash\n(.*?)```", text, re.S)
    assert found, f"README.md has no walkthrough block {tag!r}"
    return found.group(1)


LINKED = ("cli.py", "contracts")


def workdir(tmp_path: Path) -> Path:
    """A directory that looks like the repository to the walkthrough (cli.py, contracts/), so the
    files it writes (walkthrough/frank.json, walkthrough/my_rules.py) land in the test's own
    directory."""
    cwd = tmp_path / "cwd"
    cwd.mkdir(exist_ok=True)
    for name in LINKED:
        (cwd / name).symlink_to(ROOT / name)
    return cwd


def assert_writes_only_ignored_scratch_files(cwd: Path, *apart: str) -> None:
    """The walkthrough writes under ./walkthrough/ only (the `apart` entries were there before it
    ran), and .gitignore ignores all of it: run in a checkout, it leaves `git status` clean."""
    assert sorted(p.name for p in cwd.iterdir() if p.name not in LINKED + apart) == ["walkthrough"]
    written = [str(p.relative_to(cwd)) for p in (cwd / "walkthrough").rglob("*") if p.is_file()]
    assert written and [w for w in written if not is_ignored(w)] == []


def run_bash(script: str, cwd: Path, node_url: str, timeout_s: float) -> str:
    env = dict(os.environ, COMMUNITY_CHAIN_NODE=node_url,
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    result = subprocess.run(["bash", "-euo", "pipefail", "-xc", script], cwd=cwd, env=env,
                            capture_output=True, text=True, timeout=timeout_s)
    assert result.returncode == 0, f"the walkthrough stopped (exit {result.returncode}):\n" \
        f"{result.stdout[-2000:]}\n{result.stderr[-4000:]}"
    return result.stdout


def test_the_dev_chain_walkthrough_runs_as_written(tmp_path):
    port = free_port_range(1)
    url = f"http://127.0.0.1:{port}"
    log = open(tmp_path / "node.log", "wb")
    node = subprocess.Popen([sys.executable, str(ROOT / "cli.py"), "node", "run", "--port", str(port),
                             "--data-dir", str(tmp_path / "data")], stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    try:
        with Client(url) as c:
            wait_until(lambda: _answers(c), 30, "the dev node")
            cwd = workdir(tmp_path)
            run_bash(walkthrough("dev"), cwd, url, 240)
            assert_writes_only_ignored_scratch_files(cwd)
            frank = c.account("frank")
            assert (frank["stake"], frank["maturing"], frank["unbonding"]) == (10_000, 0, 5_000)
            assert frank["assets"]["behaviour"] > 0  # his stake had matured: the attendance paid
            candidates = {p["name"]: p["approval"] for p in c.producers()["producers"]}
            assert candidates["frank"] == c.account("bob")["stake"]
            assert c.status()["schedule"] == ["alice"] and not c.status()["stalled"]
    finally:
        node.terminate()
        node.wait(20)
        log.close()


def test_the_governance_walkthrough_runs_as_written_on_the_testnet(tmp_path):
    net_dir = tmp_path / "cwd" / "testnet"
    cwd = workdir(tmp_path)
    prepare(net_dir, 4, free_port_range(4))
    net = testnet.Testnet(net_dir)
    try:
        net.start_all()
        wait_until(lambda: min(finals(net, range(4))) >= 1, 30, "finality on the testnet")
        run_bash(walkthrough("testnet"), cwd, net.urls[0], 240)
        assert_writes_only_ignored_scratch_files(cwd, "testnet")
        with Client(net.urls[0]) as c:
            proposals = c.proposals()["proposals"]
            assert [p["status"] for p in proposals if p["action"] == "set_param"] in (["approved"], ["enacted"])
            assert [p["status"] for p in proposals if p["action"] == "upgrade_rules"] == ["approved"]
            wait_until(lambda: c.rules()["params"]["attend_points"] == 1500, 30, "the parameter enacted")
    finally:
        net.stop_all()


def _answers(client: Client) -> bool:
    try:
        client.status()
        return True
    except NodeUnreachable:  # not listening yet
        return False
