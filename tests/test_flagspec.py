"""Each flag is declared once, on its config's field: the absl flags and the derived lists follow it."""
from __future__ import annotations

import dataclasses

import pytest
from absl import flags

from maml_tf import flagspec
from maml_tf.config import Config
from maml_tf.rl.config import RLConfig


def _defined(cls) -> flags.FlagValues:
    fv = flags.FlagValues()
    flagspec.define_flags(cls, module_name="test_module", flag_values=fv)
    return fv


def test_supervised_flags_follow_config_fields():
    fv = _defined(Config)
    fields = {f.name: f for f in dataclasses.fields(Config)}
    assert set(fv) == set(fields) - {"norm_variant"}  # the tf2-moments variant has no flag
    for name in fv:
        assert fv[name].default == fields[name].default, name
        assert ("[maml-tf] " in fv[name].help) == fields[name].metadata[flagspec.ADDITION], name  # enums: "<a|b>: " first
    assert fv["datasource"].help == "sinusoid or omniglot or miniimagenet"
    assert fv["thread_pools"].parser.enum_values == ["auto", "tf"]
    fv(["prog", "--update_lr=0.4", "--notrain", "--baseline=oracle"])
    assert (fv.update_lr, fv.train, fv.baseline) == (0.4, False, "oracle")
    assert fv.get_flags_for_module("test_module")


def test_resumable_flags_are_declared_on_the_fields():
    from maml_tf.run import RESUMABLE_CHANGES

    assert {"metatrain_iterations", "logdir", "distribute", "thread_pools"} <= RESUMABLE_CHANGES
    assert not {"update_lr", "meta_batch_size", "seed", "norm", "num_updates"} & RESUMABLE_CHANGES


def test_rl_flags_keep_the_preset_unless_given():
    fv = _defined(RLConfig)
    assert fv["env"].default == "point" and fv["algo"].default == "maml"
    overrides = flagspec.names(RLConfig, flagspec.OVERRIDE)
    assert "fast_lr" in overrides and "env" not in overrides
    assert all(fv[name].default is None for name in overrides)  # None: the experiment's reference value
    assert not {"pretrain_lr", "gae_lambda", "hidden_sizes"} & set(fv)
    fv(["prog", "--env=cheetah_dir", "--hvp=exact"])
    assert (fv.env, fv.hvp, fv.fast_lr) == ("cheetah_dir", "exact", None)
    with pytest.raises(flags.IllegalFlagValueError):
        fv(["prog", "--hvp=perlmutter"])


def test_a_flag_needs_help_and_a_known_type():
    with pytest.raises(ValueError, match="help"):
        flagspec.setting(1)

    @dataclasses.dataclass
    class Odd:
        values: list = flagspec.setting(None, "a list")

    with pytest.raises(TypeError, match="Odd.values"):
        _defined(Odd)
