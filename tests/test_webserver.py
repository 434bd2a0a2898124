"""sice.webserver: the uvicorn configuration both HTTP servers run with."""
from __future__ import annotations

import resource

import pytest

from sice.webserver import (DEFAULT_MAX_CONNECTIONS, FD_RESERVE, ServerLimits, parse_json_strict,
                            raise_descriptor_limit, server_config)


def test_server_config_carries_the_limits():
    from uvicorn.protocols.http.h11_impl import H11Protocol

    limits = ServerLimits(max_connections=300, header_timeout=7, keep_alive_timeout=11, max_header_bytes=9000)
    config = server_config(object(), host="127.0.0.1", port=1234, limits=limits)
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert config.limit_concurrency == min(300, soft - FD_RESERVE)
    assert config.timeout_keep_alive == 11 and config.h11_max_incomplete_event_size == 9000
    assert issubclass(config.http, H11Protocol) and config.http is not H11Protocol
    assert (config.host, config.port, config.access_log) == ("127.0.0.1", 1234, False)
    assert server_config(object()).limit_concurrency == min(DEFAULT_MAX_CONNECTIONS, soft - FD_RESERVE)


def test_descriptor_limit_is_raised_not_lowered():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert raise_descriptor_limit(16) == soft  # never lowers
    assert resource.getrlimit(resource.RLIMIT_NOFILE) == (soft, hard)


@pytest.mark.parametrize("kwargs", [{"max_connections": 0}, {"header_timeout": 0}, {"keep_alive_timeout": -1}])
def test_limits_refuse_nonsense(kwargs):
    with pytest.raises(ValueError):
        ServerLimits(**kwargs)


def test_parse_json_strict_keeps_json():
    assert parse_json_strict(b'{"a": [1, 2.5e3, -0.0, true, null, "\\u00e9\\ud83d\\ude00"]}') == \
        {"a": [1, 2500.0, -0.0, True, None, "\u00e9\U0001F600"]}
