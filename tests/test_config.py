"""The operator's inputs: the config file, read with command-line overrides, and the genesis file.
A setting of the wrong type or range, or a malformed genesis, is refused before anything starts,
with a message that says what is wrong."""
import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli import cli
from core.genesis import DEFAULT_GENESIS, load_genesis
from node.config import NodeConfig, load_config


def write(tmp_path, text: str) -> str:
    path = tmp_path / "node.toml"
    path.write_text(text)
    return str(path)


def test_a_config_file_is_read_and_overrides_win(tmp_path):
    path = write(tmp_path, '[node]\nport = 9000\npeers = ["http://127.0.0.1:9001"]\n'
                           'peer_keys = {watcher = "' + "ab" * 32 + '"}\nlog_level = "DEBUG"\n')
    config = load_config(path, port=9100, host=None)
    assert (config.port, config.host, config.peers, config.peer_keys["watcher"], config.log_level) == (
        9100, "127.0.0.1", ("http://127.0.0.1:9001",), "ab" * 32, "DEBUG")
    assert load_config(None) == NodeConfig()


@pytest.mark.parametrize("line,setting", [
    ('port = "abc"', "port"),
    ("port = 80808080", "port"),
    ("port = true", "port"),
    ('peers = "http://127.0.0.1:9001"', "peers"),
    ('peers = ["127.0.0.1:9001"]', "peers"),
    ('peer_keys = {watcher = "xyz"}', "peer_keys"),
    ('peer_keys = {watcher = "' + "ab" * 31 + '  "}', "peer_keys"),  # 64 characters, 31 bytes
    ("mempool_max_txs = 0", "mempool_max_txs"),
    ('mempool_max_bytes = "big"', "mempool_max_bytes"),
    ('log_level = "loud"', "log_level"),
    ('data_dir = ""', "data_dir"),
    ("api_requests_per_s = -1", "api_requests_per_s"),
    ("api_txs_per_s = 999", "api_txs_per_s"),  # a full batch (2000) would never fit its burst
    ("max_connections = 0", "max_connections"),
    ("key_file = 5", "key_file"),
])
def test_a_setting_of_the_wrong_type_or_range_is_refused_by_name(tmp_path, line, setting):
    path = write(tmp_path, f"[node]\n{line}\n")
    with pytest.raises(ValueError) as e:
        load_config(path)
    assert str(e.value).startswith(f"{path}: {setting} must be")  # the file, then the setting


def test_unknown_settings_are_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown config keys: prot"):
        load_config(write(tmp_path, "[node]\nprot = 8080\n"))


def test_node_run_with_a_bad_config_is_a_usage_error_before_it_starts(tmp_path):
    path = write(tmp_path, "[node]\nport = 80808080\n")
    result = CliRunner().invoke(cli, ["node", "run", "--config", path, "--data-dir", str(tmp_path / "data")])
    assert result.exit_code == 2
    # one clean line naming the file and the setting, not click's usage block
    assert result.output.strip() == f"Error: {path}: port must be an integer 1..65535 (got 80808080)"
    assert not (tmp_path / "data").exists()


def test_a_setting_given_as_a_flag_is_not_blamed_on_the_file(tmp_path):
    with pytest.raises(ValueError) as e:
        load_config(write(tmp_path, "[node]\nport = 9000\n"), data_dir="")
    assert str(e.value).startswith("invalid config: data_dir must be")


def test_a_toml_syntax_error_names_the_file_and_line(tmp_path):
    path = write(tmp_path, '[node]\nport = 9000\nhost = "127.0.0.1\n')
    with pytest.raises(ValueError) as e:
        load_config(path)
    assert str(e.value).startswith(f"{path}: not valid TOML") and "line 3" in str(e.value)
    result = CliRunner().invoke(cli, ["node", "run", "--config", path])
    assert result.exit_code == 2 and "Usage:" not in result.output and "line 3" in result.output


def test_relative_paths_in_a_file_are_read_from_its_folder_and_flags_from_the_working_dir(
        tmp_path, monkeypatch):
    folder = tmp_path / "etc"
    folder.mkdir()
    path = folder / "node.toml"
    path.write_text('[node]\ndata_dir = "data"\ngenesis = "../chain/genesis.json"\n'
                    'key_file = "keys/producer.json"\nlog_file = "/var/log/node.log"\n')
    monkeypatch.chdir(tmp_path)
    config = load_config(str(path))
    assert (config.data_dir, config.genesis, config.key_file, config.log_file) == (
        str(folder / "data"), str(folder / "../chain/genesis.json"), str(folder / "keys/producer.json"),
        "/var/log/node.log")
    config = load_config("etc/node.toml", data_dir="here", key_file="k.json")
    assert (config.data_dir, config.genesis, config.key_file) == (
        "here", "etc/../chain/genesis.json", "k.json")
    assert load_config(str(path), key_file="").key_file == ""  # a flag may empty it


def test_the_readme_example_config_is_accepted_as_written(tmp_path):
    """The README's config, as printed there: its paths are read from the file's folder (the
    files it names must exist), and its peer_keys example is a comment, not a placeholder that
    the node would refuse."""
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    example = re.search(r"```toml\n(\[node\]\n.*?peer_keys.*?)```", readme, re.S).group(1)
    config = load_config(write(tmp_path, example))
    assert config.genesis == str(tmp_path / "genesis.json") and config.peer_keys == {}
    with pytest.raises(ValueError, match="peer_keys must be"):
        load_config(write(tmp_path, example.replace("peer_keys = {}", 'peer_keys = { watcher = "<64 hex digits>" }')))


def _genesis_with(**changes) -> dict:
    doc = json.loads(DEFAULT_GENESIS.read_text())
    doc.update(changes)
    return {k: v for k, v in doc.items() if v is not None}


@pytest.mark.parametrize("text,message", [
    ("not json", "is not JSON"),
    ("[1, 2]", "holds no JSON object"),
    (json.dumps(_genesis_with(members=None)), "missing field 'members'"),
    (json.dumps(_genesis_with(members=5)), "a field of the wrong type or value"),
    (json.dumps(_genesis_with(chain_id=5)), "chain_id"),
    (json.dumps(_genesis_with(genesis_time_ms="soon")), "a field of the wrong type or value"),
    (json.dumps(_genesis_with(params={"block_interval_ms": "fast"})), "a field of the wrong type or value"),
    (json.dumps(_genesis_with(members=[{"name": "a"}])), "missing field 'public_key'"),
])
def test_a_malformed_genesis_is_refused_with_what_is_wrong(tmp_path, text, message):
    path = tmp_path / "genesis.json"
    path.write_text(text)
    with pytest.raises(ValueError) as e:
        load_genesis(path)
    assert str(e.value).startswith("invalid genesis") and message in str(e.value)
    result = CliRunner().invoke(cli, ["node", "run", "--genesis", str(path), "--data-dir", str(tmp_path / "d")])
    assert result.exit_code == 2 and "invalid genesis" in result.output


def test_a_missing_genesis_or_key_file_named_in_the_config_names_the_config_and_setting(tmp_path):
    path = write(tmp_path, '[node]\ngenesis = "chain.json"\n')
    result = CliRunner().invoke(cli, ["node", "run", "--config", path])
    assert result.exit_code == 2
    assert result.output.strip() == f"Error: {path}: genesis {tmp_path / 'chain.json'}: No such file or directory"
    path = write(tmp_path, '[node]\nkey_file = "producer.json"\n')
    result = CliRunner().invoke(cli, ["node", "run", "--config", path, "--data-dir", str(tmp_path / "d")])
    assert result.exit_code == 2 and "Usage:" not in result.output
    assert f"{path}: key_file {tmp_path / 'producer.json'} is not a readable key file" in result.output
