"""The agents.yaml schema: names, bounds, tri-state tool lists, unknown keys, effective values."""

from __future__ import annotations

import math

import pytest
from pydantic import ValidationError

from agent_dispatch.errors import BadArgumentError, InvalidInputFailure
from agent_dispatch.models import (
    AgentConfig,
    AppConfig,
    EffectiveAgent,
    Settings,
    check_agent_name,
    check_not_option,
    is_valid_agent_name,
    split_tools,
)


@pytest.mark.parametrize("name", ["infra", "a", "7", "web-2", "my_agent", "A-b_C9"])
def test_valid_agent_names(name):
    assert is_valid_agent_name(name)
    assert check_agent_name(name) == name
    assert name in AppConfig.model_validate({"agents": {name: {"directory": "/p"}}}).agents


@pytest.mark.parametrize(
    "name", ["", "-x", "_x", "a b", "a/b", "../a", "a\n", "a\r", "a.b", "é", "a\x00", "infra\n", " infra"]
)
def test_invalid_agent_names(name):
    assert not is_valid_agent_name(name)
    with pytest.raises(BadArgumentError) as caught:
        check_agent_name(name)
    assert repr(name) in caught.value.message
    with pytest.raises(ValidationError, match="invalid agent name"):
        AppConfig.model_validate({"agents": {name: {"directory": "/p"}}})


def test_non_string_names_are_invalid():
    assert not is_valid_agent_name(None)
    assert not is_valid_agent_name(7)


@pytest.mark.parametrize("timeout", [0, -1, 1.5, "soon", [300], True, False])
def test_timeout_must_be_a_positive_whole_number(timeout):
    with pytest.raises(ValidationError):
        AgentConfig(directory="/p", timeout=timeout)


def test_timeout_accepts_whole_numbers():
    assert AgentConfig(directory="/p", timeout=1).timeout == 1
    assert AgentConfig(directory="/p", timeout=300.0).timeout == 300
    assert AgentConfig(directory="/p").timeout is None


@pytest.mark.parametrize("budget", [math.nan, math.inf, -math.inf, -1.0, 0, 0.0, True])
def test_budget_must_be_finite_and_positive(budget):
    with pytest.raises(ValidationError):
        AgentConfig(directory="/p", max_budget_usd=budget)
    with pytest.raises(ValidationError):
        Settings(default_max_budget_usd=budget)


def test_budget_accepts_a_positive_amount():
    assert AgentConfig(directory="/p", max_budget_usd=0.25).max_budget_usd == 0.25
    assert Settings(default_max_budget_usd=3).default_max_budget_usd == 3


@pytest.mark.parametrize("directory", ["", "   ", "/a\x00b"])
def test_directory_is_required_and_sane(directory):
    with pytest.raises(ValidationError):
        AgentConfig(directory=directory)
    with pytest.raises(ValidationError):
        AppConfig.model_validate({"agents": {"x": {"description": "no directory"}}})


@pytest.mark.parametrize("field", ["model", "permission_mode"])
@pytest.mark.parametrize("value", ["-x", "--dangerously-skip-permissions", "", "  "])
def test_flag_values_cannot_look_like_options(field, value):
    with pytest.raises(ValidationError):
        AgentConfig(directory="/p", **{field: value})


@pytest.mark.parametrize("tools", [["-x"], [""], ["Read", " "], ["a\nb"], ["a\x00"]])
def test_tool_names_are_checked(tools):
    with pytest.raises(ValidationError):
        AgentConfig(directory="/p", allowed_tools=tools)
    with pytest.raises(ValidationError):
        Settings(default_disallowed_tools=tools)


def test_tool_lists_are_tri_state():
    assert AgentConfig(directory="/p").allowed_tools is None
    assert AgentConfig(directory="/p", allowed_tools=[]).allowed_tools == []
    assert AgentConfig(directory="/p", allowed_tools=["Read", "Bash(git *)"]).allowed_tools == ["Read", "Bash(git *)"]


def test_effective_agent_inherits_only_absent_values():
    settings = Settings(default_timeout=50, default_allowed_tools=["Read"], default_disallowed_tools=["Write"],
                        default_permission_mode="plan", default_max_budget_usd=2.0)
    inherited = EffectiveAgent.resolve("a", AgentConfig(directory="/p"), settings)
    assert (inherited.timeout, inherited.allowed_tools, inherited.disallowed_tools) == (50, ("Read",), ("Write",))
    assert (inherited.permission_mode, inherited.max_budget_usd) == ("plan", 2.0)
    explicit = EffectiveAgent.resolve(
        "a", AgentConfig(directory="/p", timeout=9, allowed_tools=[], disallowed_tools=["Bash"]), settings
    )
    assert (explicit.timeout, explicit.allowed_tools, explicit.disallowed_tools) == (9, (), ("Bash",))


@pytest.mark.parametrize(
    ("data", "where"),
    [
        ({"agents": {"a": {"directory": "/p", "colour": "red"}}}, ("agents", "a", "colour")),
        ({"agents": {}, "extra": 1}, ("extra",)),
        ({"settings": {"default_timout": 5}}, ("settings", "default_timout")),
        ({"settings": {"cache": {"ttl": 5, "size": 3}}}, ("settings", "cache", "size")),
    ],
)
def test_unknown_keys_are_reported(data, where):
    with pytest.raises(ValidationError) as caught:
        AppConfig.model_validate(data)
    [error] = caught.value.errors()
    assert error["type"] == "extra_forbidden" and error["loc"] == where


def test_empty_sections_mean_defaults():
    config = AppConfig.model_validate({"agents": None, "settings": None})
    assert config.agents == {} and config.settings == Settings()
    settings = Settings.model_validate({"default_allowed_tools": None})
    assert settings.default_allowed_tools == []


@pytest.mark.parametrize(
    ("settings", "ok"),
    [
        ({"default_timeout": 0}, False),
        ({"max_concurrency": 0}, False),
        ({"max_dispatch_depth": -1}, False),
        ({"max_dispatch_depth": 0}, True),
        ({"cache": {"ttl": math.inf}}, False),
        ({"cache": {"ttl": -1}}, False),
        ({"cache": {"max_size": 0}}, True),
        ({"default_permission_mode": "-p"}, False),
    ],
)
def test_settings_bounds(settings, ok):
    if ok:
        Settings.model_validate(settings)
    else:
        with pytest.raises(ValidationError):
            Settings.model_validate(settings)


def test_split_tools_and_option_guard():
    assert split_tools(" Read, Grep ,,Bash(git *) ") == ["Read", "Grep", "Bash(git *)"]
    assert split_tools(" , ") == []
    check_not_option("sonnet", "model")
    with pytest.raises(InvalidInputFailure):
        check_not_option("--resume", "session id")
