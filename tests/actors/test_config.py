"""Group config validation: errors name the file, the key and what is allowed."""

from __future__ import annotations

import pytest

from actors import ConfigError, load_group_config


def write(tmp_path, text):
    path = tmp_path / "group.toml"
    path.write_text(text)
    return path


def test_valid_config_loads_with_defaults(tmp_path):
    path = write(tmp_path, '[group]\nname = "g"\n[[actor]]\nclass = "m:A"\n[actor.config]\nrate = 5\n')
    config = load_group_config(path)
    assert config.name == "g" and config.drain_timeout == 5.0
    assert config.actors[0].target == "m:A" and config.actors[0].config == {"rate": 5}


def test_a_config_file_that_is_not_utf8_is_a_config_error(tmp_path):
    path = tmp_path / "group.toml"
    path.write_bytes(b'[[actor]]\nclass = "m:\xff"\n')
    with pytest.raises(ConfigError, match="not UTF-8 text"):
        load_group_config(path)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[group]\nnmae = "g"\n[[actor]]\nclass = "m:A"\n', r"unknown key\(s\) group.\['nmae'\]; allowed"),
        (
            '[group]\ndrain_timeout = -1\n[[actor]]\nclass = "m:A"\n',
            "group.drain_timeout = -1 must be positive",
        ),
        ('[group]\non_actor_failure = "panic"\n[[actor]]\nclass = "m:A"\n', "allowed: exit, continue"),
        ('[[actor]]\nclass = "no_colon"\n', r"actor\[0\].class = 'no_colon' is not 'module:Class'"),
        ("[[actor]]\nname = 'x'\n", r"actor\[0\].class is missing"),
        ("[group]\n", "no actors"),
        (
            '[[actor]]\nclass = "m:A"\nname = "x"\n[[actor]]\nclass = "m:B"\nname = "x"\n',
            "used more than once",
        ),
        ("[group\n", "not valid TOML"),
    ],
)
def test_invalid_config_errors_name_file_key_and_allowed_values(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match=message) as info:
        load_group_config(path)
    assert str(path) in str(info.value)


def test_the_hub_table_gives_connect_its_options(tmp_path):
    text = "[hub]\nmax_lag = inf\nslow_after = 0\nhwm = 5000\nheartbeat_timeout = 4\n[[actor]]\nclass = 'm:A'\n"
    config = load_group_config(write(tmp_path, text))
    assert config.hub == {"max_lag": float("inf"), "slow_after": 0.0, "hwm": 5000, "heartbeat_timeout": 4.0}
    assert load_group_config(write(tmp_path, "[[actor]]\nclass = 'm:A'\n")).hub == {}


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("max_lagg = 1.0", r"unknown key\(s\) hub.\['max_lagg'\]; allowed: \[.*'max_lag'"),
        ("max_lag = 0", "hub.max_lag = 0 must be > 0"),
        ("max_lag = nan", "hub.max_lag = nan is not a number"),
        ("slow_after = -1", r"hub.slow_after = -1 must be finite and >= 0 \(0: off\)"),
        ("heartbeat_ivl = 0", "hub.heartbeat_ivl = 0 must be finite and > 0"),
        ("heartbeat_timeout = inf", "hub.heartbeat_timeout = inf must be finite"),
        ("hwm = 1.5", "hub.hwm = 1.5 must be a whole number > 0"),
        ("hwm = true", "hub.hwm = True must be a whole number > 0"),
        ("max_streams = 0", "hub.max_streams = 0 must be a whole number > 0"),
        ("slow_after = '1s'", "hub.slow_after = '1s' is not a number"),
    ],
)
def test_a_bad_hub_option_names_the_file_and_key(tmp_path, line, message):
    path = write(tmp_path, f"[hub]\n{line}\n[[actor]]\nclass = 'm:A'\n")
    with pytest.raises(ConfigError, match=message) as info:
        load_group_config(path)
    assert str(path) in str(info.value)


def test_a_hub_option_the_hub_refuses_is_a_config_error_naming_the_file(tmp_path):
    import asyncio

    import actors

    path = write(tmp_path, "[hub]\nmax_key = 10\n[[actor]]\nclass = 'actors:Actor'\n")
    config = load_group_config(path)  # a whole number > 0: the hub itself knows its floor (263)
    with pytest.raises(ConfigError, match=r"\[hub\]: hub option max_key=10 is not a byte count >= 263") as info:
        asyncio.run(actors.run_group(config, connect_timeout=0.1))
    assert str(path) in str(info.value)


def test_environment_overrides_the_file(tmp_path):
    config = load_group_config(write(tmp_path, '[group]\nfrontend = "tcp://a:1"\n[[actor]]\nclass = "m:A"\n'))
    overridden = config.with_environment({"TICKBUS_FRONTEND": "tcp://b:2", "TICKBUS_DRAIN_TIMEOUT": "2.5"})
    assert overridden.frontend == "tcp://b:2" and overridden.drain_timeout == 2.5
    with pytest.raises(ConfigError, match="TICKBUS_DRAIN_TIMEOUT"):
        config.with_environment({"TICKBUS_DRAIN_TIMEOUT": "soon"})


def test_the_app_version_comes_from_the_file_then_the_environment(tmp_path):
    from actors import app_version

    config = load_group_config(write(tmp_path, '[group]\nversion = "1.3.0"\n[[actor]]\nclass = "m:A"\n'))
    assert config.version == "1.3.0" and app_version(config) == "1.3.0"
    assert app_version(config.with_environment({"TICKBUS_APP_VERSION": "1.4.0rc1"})) == "1.4.0rc1"
    with pytest.raises(ConfigError, match=r"group\.version"):
        load_group_config(write(tmp_path, "[group]\nversion = 13\n[[actor]]\nclass = 'm:A'\n"))


def test_the_app_version_defaults_to_the_actor_package_distribution_else_tickbus():
    from importlib import metadata

    from actors import ActorSpec, GroupConfig, app_version, version

    # msgpack is installed as a distribution: an actor in it would be labelled with its version
    installed = GroupConfig(actors=(ActorSpec("msgpack.fallback:Packer"),))
    assert app_version(installed) == metadata.version("msgpack")
    # a module no distribution provides (a checkout, a script directory): tickbus's version
    bare = GroupConfig(actors=(ActorSpec("examples.pipeline:Model"),))
    assert app_version(bare) == version()
