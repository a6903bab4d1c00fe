from __future__ import annotations

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
