"""The operator's config file: read with command-line overrides; a setting of the wrong type or
range is refused before anything starts, naming the setting."""
import pytest
from click.testing import CliRunner

from cli import cli
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
    ("mempool_max_txs = 0", "mempool_max_txs"),
    ('mempool_max_bytes = "big"', "mempool_max_bytes"),
    ('log_level = "loud"', "log_level"),
    ('data_dir = ""', "data_dir"),
    ("key_file = 5", "key_file"),
])
def test_a_setting_of_the_wrong_type_or_range_is_refused_by_name(tmp_path, line, setting):
    with pytest.raises(ValueError) as e:
        load_config(write(tmp_path, f"[node]\n{line}\n"))
    assert str(e.value).startswith(f"invalid config: {setting} must be")


def test_unknown_settings_are_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown config keys: prot"):
        load_config(write(tmp_path, "[node]\nprot = 8080\n"))


def test_node_run_with_a_bad_config_is_a_usage_error_before_it_starts(tmp_path):
    result = CliRunner().invoke(cli, ["node", "run", "--config", write(tmp_path, "[node]\nport = 80808080\n"),
                                      "--data-dir", str(tmp_path / "data")])
    assert result.exit_code == 2
    assert "invalid config: port must be an integer 1..65535 (got 80808080)" in result.output
    assert not (tmp_path / "data").exists()
