"""One declaration per flag: a config dataclass's fields say what their command-line flag is.

A field declared with `setting(...)` carries its default (once, on the dataclass) and, in its
metadata, its flag's help text, whether it is a flag of the original code or a maml-tf addition
(whose help then starts with "[maml-tf]"), whether a resumed run may change it, its enum choices,
and whether an unset flag means "the experiment's preset value" (the RL driver) instead of the
field's default. `define_flags` turns the fields into absl flags and `names` answers the questions
the drivers used to answer with hand-kept lists (which fields are flags, which may change on
resume, which override a preset), so a new setting is written in one place.
"""
from __future__ import annotations

import dataclasses
import sys
from typing import Any

from absl import flags

ADDITION_PREFIX = "[maml-tf] "

# metadata keys
HELP, ADDITION, RESUMABLE, CHOICES, FLAG, OVERRIDE = "help", "addition", "resumable", "choices", "flag", "override"

# absl definers by the field's annotation (the modules use `from __future__ import annotations`)
_DEFINERS = {"str": flags.DEFINE_string, "str | None": flags.DEFINE_string, "int": flags.DEFINE_integer,
             "float": flags.DEFINE_float, "bool": flags.DEFINE_bool}


def setting(default: Any, help: str = "", *, addition: bool = False, resumable: bool = False,
            choices: tuple | list | None = None, flag: bool = True, override: bool = False) -> Any:
    """A dataclass field with its flag's declaration in the metadata.

    `addition`: a maml-tf flag, not one of the original code's (its help gets ADDITION_PREFIX).
    `resumable`: a run resumed from a checkpoint may change it (how long or how a run logs, not what
    it computes). `choices`: an absl enum flag. `flag=False`: a setting without a flag.
    `override`: the flag defaults to None, meaning "keep the preset's value" (RL experiments).
    """
    if flag and not help:
        raise ValueError("a setting that is a flag needs its help text")
    return dataclasses.field(default=default, metadata={
        HELP: help, ADDITION: addition, RESUMABLE: resumable, CHOICES: tuple(choices) if choices else None,
        FLAG: flag, OVERRIDE: override})


def _fields(cls) -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(cls) if f.metadata.get(FLAG)]


def names(cls, key: str = FLAG) -> list[str]:
    """Names of `cls`'s flag fields whose metadata `key` is true (by default: all flag fields), in order."""
    return [f.name for f in _fields(cls) if f.metadata.get(key)]


def help_text(field: dataclasses.Field) -> str:
    return (ADDITION_PREFIX if field.metadata[ADDITION] else "") + field.metadata[HELP]


def define_flags(cls, module_name: str, flag_values: flags.FlagValues = flags.FLAGS) -> list[str]:
    """Define an absl flag per flag field of `cls`, owned by `module_name` (the driver's `__name__`).

    The flag's default is the field's (None for `override` fields), its type the field's annotation,
    an enum when the field has choices. The flags are registered as the driver's own, as if it had
    called DEFINE_* itself (absl names a script run with -m by its path), so --help lists them under
    it. Returns the flag names.
    """
    owner = sys.argv[0] if module_name == "__main__" else module_name
    for f in _fields(cls):
        default = None if f.metadata[OVERRIDE] else f.default
        kwargs = dict(flag_values=flag_values, module_name=owner)
        if f.metadata[CHOICES]:
            flags.DEFINE_enum(f.name, default, list(f.metadata[CHOICES]), help_text(f), **kwargs)
        else:
            try:
                define = _DEFINERS[f.type if isinstance(f.type, str) else f.type.__name__]
            except KeyError:
                raise TypeError(f"{cls.__name__}.{f.name}: no absl flag type for {f.type!r}") from None
            define(f.name, default, help_text(f), **kwargs)
        flag_values.register_flag_by_module_id(id(sys.modules.get(module_name)), flag_values[f.name])
    return names(cls)
