"""Settings: each configuration fact declared once, beside the component it configures.

A component's configuration is a frozen dataclass whose fields are declared with `setting(...)`: the
flag, its default, how its text is read and what values are refused. That one declaration registers the
command-line flag (`add_flags`), reads it back (`from_args`) and checks a value given in code
(`validate`, from the dataclass's `__post_init__`), so every setting has one default and one check, and
every refusal names its flag: on the command line argparse exits 2 with "argument --flag: ...", and a
configuration built in code raises SettingError worded the same way. Nothing is clamped: a value outside
its range is refused. A field that holds another configuration (a nested dataclass) registers its flags
too, so a composed configuration such as the agent's is one call.
"""

from __future__ import annotations

import argparse
import dataclasses
import ipaddress
import typing
from collections.abc import Callable, Iterator
from enum import Enum
from typing import Any

Check = Callable[[Any], "str | None"]  # a value -> what is wrong with it, or None


class SettingError(ValueError):
    """A configuration value refused: names the flag, as argparse does."""

    def __init__(self, flag: str, problem: str) -> None:
        super().__init__(f"argument {flag}: {problem}")
        self.flag = flag


@dataclasses.dataclass(frozen=True, slots=True)
class Setting:
    flag: str
    help: str
    parse: Callable[[str], Any] = str  # the flag's text -> a value; ValueError/ArgumentTypeError refuse
    check: Check | None = None  # what a value must satisfy, from the command line or from code
    repeat: bool = False  # a repeatable flag; the field holds a tuple of parsed values
    switch: bool = False  # a flag without a value: present means True
    metavar: str | None = None
    shown: str | None = None  # the default as flag text, where repr() would not read as one
    exclusive: str | None = None  # settings sharing this name are one required choice of flags

    @property
    def dest(self) -> str:
        return self.flag.lstrip("-").replace("-", "_")

    def choices(self) -> list[str] | None:
        return [m.value for m in self.parse] if _is_enum(self.parse) else None  # type: ignore[attr-defined]

    def read(self, text: str) -> Any:
        """argparse's `type`: parse the text, then refuse what the check refuses, quoting the text."""
        choices = self.choices()
        if choices is not None and text not in choices:
            raise argparse.ArgumentTypeError(f"{text!r} is not one of: {', '.join(choices)}")
        try:
            value = self.parse(text)
        except argparse.ArgumentTypeError:
            raise
        except ValueError as error:
            problem = str(error) or f"is not a valid {self.flag} value"
            raise argparse.ArgumentTypeError(f"{text!r} {problem}") from None
        problem = self.check(value) if self.check else None
        if problem:
            raise argparse.ArgumentTypeError(f"{text!r} {problem}")
        return value


def setting(default: Any, flag: str, help: str, **options: Any) -> Any:
    """A dataclass field declared as a setting (see the module's doc)."""
    return dataclasses.field(default=default, metadata={"setting": Setting(flag, help, **options)})


def settings_of(cls: type) -> Iterator[tuple[dataclasses.Field[Any], Setting]]:
    """Every (field, setting) of a configuration dataclass and of the configurations it nests."""
    nested = _nested(cls)
    for f in dataclasses.fields(cls):
        if "setting" in f.metadata:
            yield f, f.metadata["setting"]
        elif f.name in nested:
            yield from settings_of(nested[f.name])


def default_of(f: dataclasses.Field[Any]) -> Any:
    return f.default_factory() if f.default is dataclasses.MISSING else f.default  # type: ignore[misc]


def add_flags(parser: argparse.ArgumentParser, cls: type) -> None:
    groups: dict[str, argparse._MutuallyExclusiveGroup] = {}
    for f, s in settings_of(cls):
        where: Any = parser
        if s.exclusive is not None:
            if s.exclusive not in groups:
                groups[s.exclusive] = parser.add_mutually_exclusive_group(required=True)
            where = groups[s.exclusive]
        _add_flag(where, f, s)


def _add_flag(parser: Any, f: dataclasses.Field[Any], s: Setting) -> None:
    options: dict[str, Any] = {"help": s.help, "dest": s.dest}
    default = default_of(f)
    if s.switch:
        parser.add_argument(s.flag, action="store_true", **options)
        return
    if s.repeat:  # argparse appends to a default list: the default is applied in from_args
        options.update(action="append", default=None)
        if default:
            options["help"] += f" (default: {s.shown or ' '.join(map(str, default))})"
    else:
        options["default"] = s.shown if s.shown is not None else default
    parser.add_argument(s.flag, type=s.read, metavar=s.metavar or _metavar(s), **options)


def from_args(cls: type, args: argparse.Namespace) -> Any:
    """The configuration the parsed flags describe (a flag not given takes its one default)."""
    values: dict[str, Any] = {}
    nested = _nested(cls)
    for f in dataclasses.fields(cls):
        if "setting" in f.metadata:
            s: Setting = f.metadata["setting"]
            value = getattr(args, s.dest)
            if s.repeat:
                value = default_of(f) if value is None else tuple(value)
            values[f.name] = value
        elif f.name in nested:
            values[f.name] = from_args(nested[f.name], args)
    return cls(**values)


def validate(config: Any) -> None:
    """Refuse, naming the flag, a value the setting's check refuses (called by __post_init__)."""
    for f in dataclasses.fields(config):
        s = f.metadata.get("setting")
        if s is None or s.check is None:
            continue
        value = getattr(config, f.name)
        for item in value if s.repeat else (value,):
            problem = s.check(item)
            if problem:
                raise SettingError(s.flag, f"{item!r} {problem}")


def _nested(cls: type) -> dict[str, type]:
    """The fields of `cls` that hold a configuration of their own (a dataclass), by name."""
    hints = typing.get_type_hints(cls)
    return {
        f.name: hints[f.name]
        for f in dataclasses.fields(cls)
        if isinstance(hints[f.name], type) and dataclasses.is_dataclass(hints[f.name])
    }


def _is_enum(parse: Any) -> bool:
    return isinstance(parse, type) and issubclass(parse, Enum)


def _metavar(s: Setting) -> str | None:
    choices = s.choices()
    return "{" + ",".join(choices) + "}" if choices else None


# Checks and parsers shared by the components' declarations.


def whole_at_least(low: int) -> Check:
    def check(value: int) -> str | None:
        return None if value >= low else f"is not a whole number of at least {low}"

    return check


def positive_seconds(value: float) -> str | None:
    """A duration: above 0 and finite (NaN fails the comparison)."""
    return None if 0 < value < float("inf") else "is not a positive number of seconds"


def finite_at_least(low: float, unit: str) -> Check:
    def check(value: float) -> str | None:
        ok = value >= low and value != float("inf")  # NaN fails the comparison
        return None if ok else f"is not a number of {unit} of at least {low:g}"

    return check


def whole(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError("is not a whole number") from None


def number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ValueError("is not a number") from None


def host_port(text: str) -> tuple[str, int]:
    """IP:PORT or [IPv6]:PORT; a bare address means port 53."""
    host, port = text, "53"
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        if rest.startswith(":"):
            port = rest[1:]
    elif text.count(":") == 1:
        host, port = text.split(":")
    try:
        ipaddress.ip_address(host)
        value = int(port)
        if not 0 <= value <= 65535:
            raise ValueError
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not IP:PORT, [IPv6]:PORT or an IP address") from None
    return host, value


def address_or_off(text: str) -> tuple[str, int] | None:
    """IP:PORT, [IPv6]:PORT, or `off` (an HTTP listener: unlike DNS there is no usual port to assume)."""
    if text == "off":
        return None
    has_port = "]:" in text if text.startswith("[") else text.count(":") == 1
    if not has_port:
        raise argparse.ArgumentTypeError(f"{text!r} is not IP:PORT, [IPv6]:PORT or off")
    return host_port(text)


def network(text: str) -> str:
    try:
        return ipaddress.ip_network(text, strict=False).compressed
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an address or CIDR range") from None


def port_number(text: str) -> int:
    try:
        value = int(text)
        if not 0 < value < 65536:
            raise ValueError
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number (1-65535)") from None
    return value
