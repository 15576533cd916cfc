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
