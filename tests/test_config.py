from __future__ import annotations

from typing import Any

import pytest

from digitcloud.config import Settings
from digitcloud.errors import ConfigError


def test_argument_beats_environment_beats_default() -> None:
    env = {"DIGITCLOUD_BATCH_SIZE": "64", "DIGITCLOUD_BACKEND": "local", "DIGITCLOUD_OFFLINE": "1"}
    assert Settings.resolve(environ={}) == Settings()
    from_env = Settings.resolve(environ=env)
    assert (from_env.batch_size, from_env.backend, from_env.offline) == (64, "local", True)
    assert Settings.resolve(batch_size=8, backend="auto", offline=False, environ=env) == Settings(
        backend="auto", batch_size=8, offline=False
    )


@pytest.mark.parametrize(
    ("kwargs", "env", "message"),
    [
        ({"backend": "gpu"}, {}, "backend must be one of"),
        ({"batch_size": 0}, {}, "batch_size must be between 1 and 250,000; got 0"),
        ({}, {"DIGITCLOUD_BATCH_SIZE": "250001"}, "batch_size must be between 1 and 250,000; got 250001"),
        ({"num_threads": 0}, {}, "num_threads"),
        ({}, {"DIGITCLOUD_BATCH_SIZE": "lots"}, "DIGITCLOUD_BATCH_SIZE must be an integer"),
        ({}, {"DIGITCLOUD_OFFLINE": "ye"}, "DIGITCLOUD_OFFLINE must be 1 or 0 .* got 'ye'"),
        ({}, {"DIGITCLOUD_PRIVATE_URLS": "maybe"}, "DIGITCLOUD_PRIVATE_URLS must be 1 or 0 .* got 'maybe'"),
    ],
)
def test_bad_settings_name_what_is_wrong(kwargs: dict, env: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Settings.resolve(environ=env, **kwargs)


def test_environment_is_read_when_the_client_is_built(monkeypatch: pytest.MonkeyPatch) -> None:
    from digitcloud import Client

    monkeypatch.setenv("DIGITCLOUD_BATCH_SIZE", "32")
    assert Client().settings.batch_size == 32
    monkeypatch.setenv("DIGITCLOUD_BATCH_SIZE", "16")
    assert Client().settings.batch_size == 16


def test_a_secret_redacts_itself_from_server_text() -> None:
    from digitcloud.config import Secret

    token = Secret("r8_abcdef123")
    assert token.redact("x r8_abcdef123 y r8_abcdef123") == "x <REPLICATE_API_TOKEN> y <REPLICATE_API_TOKEN>"
    assert token.redact("nothing here") == "nothing here"
    assert Secret("ab").redact("a tab") == "a tab"  # too short to be a token: text is left whole


@pytest.mark.parametrize(
    ("bad", "position", "name"), [("\u200b", 7, "ZERO WIDTH SPACE"), ("\u201d", 7, "RIGHT DOUBLE")]
)
def test_a_token_that_cannot_travel_in_a_header_is_refused_without_showing_it(
    bad: str, position: int, name: str
) -> None:
    token = "r8_abc" + bad + "SENTINEL123"
    cases: list[tuple[dict[str, Any], dict[str, str], str]] = [
        ({"model": "o/n"}, {"REPLICATE_API_TOKEN": token}, "REPLICATE_API_TOKEN"),
        ({"model": "o/n", "token": token}, {}, "token="),
    ]
    for kwargs, env, where in cases:
        with pytest.raises(ConfigError) as exc:
            Settings.resolve(environ=env, **kwargs)
        message = str(exc.value)
        assert message.startswith(where) and f"character {position}" in message and name in message
        assert "SENTINEL" not in message and "SENTINEL" not in repr(exc.value.args)
    # not used, so not judged: a local run or one with no Replicate model never sends it
    assert Settings.resolve(backend="local", model="o/n", environ={"REPLICATE_API_TOKEN": token}).backend == "local"
    assert Settings.resolve(environ={"REPLICATE_API_TOKEN": token}).model is None


def test_a_cloud_given_as_an_argument_replaces_the_one_in_the_environment() -> None:
    env = {"DIGITCLOUD_COG_URL": "http://127.0.0.1:5000", "DIGITCLOUD_MODEL": "e/m"}
    with pytest.raises(ConfigError, match="not both"):  # the environment alone names two clouds
        Settings.resolve(environ=env)
    chosen = Settings.resolve(model="o/n", environ=env)
    assert (chosen.model, chosen.cog_url, chosen.deployment) == ("o/n", None, None)
    chosen = Settings.resolve(deployment="o/d", environ=env)
    assert (chosen.model, chosen.cog_url, chosen.deployment) == (None, None, "o/d")
    chosen = Settings.resolve(cog_url="http://10.0.0.2:5000", environ=env)
    assert (chosen.model, chosen.cog_url) == (None, "http://10.0.0.2:5000")
    assert Settings.resolve(environ={"DIGITCLOUD_DEPLOYMENT": "o/d"}).deployment == "o/d"
    # a local or offline run never uses a cloud, so the environment's cannot stop it
    assert Settings.resolve(backend="local", environ=env).cog_url is None
    assert Settings.resolve(environ={**env, "DIGITCLOUD_OFFLINE": "1"}).model is None
