"""The carbon options as command-line flags: one flag per row of :data:`greenflow.options.OPTIONS`.

``greenflow run`` and ``greenflow plan`` take every option whose row lists their entry point, under the
row's ``flag`` (repeatable where the row says so; ``--region`` repeated gives ``region`` then ``regions``).
The flags carry text: the table's parser reads it, so a bad value is refused with the same message by
the commands, the Airflow operators and the Prefect decorator.

Two views of the same table: :func:`flag_kinds` for the launcher's Typer-free parser, and
:func:`with_option_flags`, which gives a Typer command one parameter per flag (Typer is imported only
there). :func:`given_options` turns the parsed flags back into the table's option names.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Literal, TypeVar

from greenflow.cli.attempt import provider_options
from greenflow.options import OPTION, EntryPoint, Option, default_text, options_for

FlagKind = Literal["str", "int", "list", "flag", "off"]
"""How a flag is read: one value, an integer, a repeatable value, or a switch without a value that turns
its option on (``flag``) or off (``off``, the ``--no-`` spelling)."""
F = TypeVar("F", bound=Callable[..., Any])


def keyword(option: Option) -> str:
    """The command's keyword for ``option``'s flag (``--provider-option`` -> ``provider_option``)."""
    assert option.flag is not None
    return option.flag.removeprefix("--").replace("-", "_")


def _kind(option: Option) -> FlagKind:
    if "bool" in option.type.split(" | "):
        # --forecast-correction / --no-forecast-correction, --interruptible / --no-interruptible: switches;
        # without either the option takes the table's default (forecast_correction's is "auto").
        return "flag"
    return "list" if option.repeated else "str"


def _off(flag: str) -> str:
    return "--no-" + flag.removeprefix("--")


def _flag_options(entry_point: EntryPoint) -> dict[str, Option]:
    """Flag -> the first option it sets (``--region`` sets ``region``, then ``regions``)."""
    flags: dict[str, Option] = {}
    for option in options_for(entry_point):
        if option.flag is not None:
            flags.setdefault(option.flag, option)
    return flags


def flag_kinds(entry_point: EntryPoint) -> dict[str, tuple[str, FlagKind]]:
    """Every carbon flag of ``entry_point``: flag -> (keyword, kind), the ``--no-`` spelling of switches too."""
    kinds: dict[str, tuple[str, FlagKind]] = {}
    for flag, option in _flag_options(entry_point).items():
        kinds[flag] = (keyword(option), _kind(option))
        if _kind(option) == "flag":
            kinds[_off(flag)] = (keyword(option), "off")
    return kinds


def given_options(values: Mapping[str, Any], entry_point: EntryPoint) -> dict[str, Any]:
    """The options a command line gave, by the table's names, for :meth:`CarbonSpec.declare`.

    ``values`` maps keywords to what was parsed; ``None`` (or an absent keyword, an empty list) means not
    given, so the table's default at ``entry_point`` applies. A switch is ``True`` or ``False`` when given.
    """
    given: dict[str, Any] = {}
    for option in _flag_options(entry_point).values():
        value = values.get(keyword(option))
        if value is None or value == [] or value == ():
            continue
        if option.name == "region":
            given["region"], *more = list(value)
            if more:
                given["regions"] = more
        elif option.name == "provider_options":
            given["provider_options"] = provider_options(list(value))
        else:
            given[option.name] = value
    if "deadline" in given:
        given.setdefault("max_delay", None)  # a deadline replaces the command's own delay (0s), it adds no limit
    return given


def _help(option: Option, entry_point: EntryPoint) -> str:
    text = option.help
    if option.name == "region":
        text += " Repeat the flag for more regions: " + OPTION["regions"].help
    return f"{text} Default: {default_text(option.default_for(entry_point)).strip('`')}."


def option_parameters(entry_point: EntryPoint, aliases: Mapping[str, tuple[str, ...]] | None = None) -> list[Any]:
    """One keyword-only Typer parameter per carbon flag of ``entry_point`` (``aliases``: more spellings)."""
    import inspect

    import typer

    parameters = []
    for flag, option in _flag_options(entry_point).items():
        kind = _kind(option)
        names = (flag, *(aliases or {}).get(option.name, ()))
        annotation: Any
        if kind == "flag":
            switch = f"{names[0]}/{_off(names[0])}"
            annotation = bool | None
            default = typer.Option(None, switch, *names[1:], help=_help(option, entry_point), show_default=False)
        else:
            annotation = list[str] | None if kind == "list" else str | None
            default = typer.Option(None, *names, help=_help(option, entry_point), show_default=False)
        parameters.append(
            inspect.Parameter(keyword(option), inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)
        )
    return parameters


def with_option_flags(
    entry_point: EntryPoint, aliases: Mapping[str, tuple[str, ...]] | None = None
) -> Callable[[F], F]:
    """Give a Typer command (whose signature ends in ``**options``) one parameter per carbon flag.

    The command receives the flags' values in ``**options``, keyed by :func:`keyword`.
    """

    import inspect  # here: the launcher's fast path imports this module and never needs it

    def decorate(command: F) -> F:
        signature = inspect.signature(command, eval_str=True)
        own = [p for p in signature.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
        parameters = own + option_parameters(entry_point, aliases)
        command.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
        command.__annotations__ = {p.name: p.annotation for p in parameters} | {"return": signature.return_annotation}
        return command

    return decorate
