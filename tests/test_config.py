"""Flags -> config: the reference's experiment folder names and the bad-flag messages."""
import pytest

from maml_tf.config import Config
from maml_tf.errors import MamlError


@pytest.mark.parametrize("flags, expected", [
    (dict(datasource="sinusoid", norm="None", update_batch_size=10, update_lr=0.01, metatrain_iterations=70000),
     "cls_5.mbs_25.ubs_10.numstep1.updatelr0.01nonorm"),
    (dict(datasource="omniglot", meta_batch_size=32, update_batch_size=1, update_lr=0.4),
     "cls_5.mbs_32.ubs_1.numstep1.updatelr0.4batchnorm"),
    (dict(datasource="miniimagenet", meta_batch_size=4, update_batch_size=1, update_lr=0.01, num_updates=5,
          num_filters=32, max_pool=True), "cls_5.mbs_4.ubs_1.numstep5.updatelr0.01hidden32maxpoolbatchnorm"),
    (dict(datasource="omniglot", num_classes=20, meta_batch_size=16, update_batch_size=1, update_lr=0.1,
          num_updates=5, stop_grad=True), "cls_20.mbs_16.ubs_1.numstep5.updatelr0.1stopgradbatchnorm"),
    (dict(norm="None", baseline="oracle", update_batch_size=5, train_update_batch_size=10, train=False),
     "cls_5.mbs_25.ubs_10.numstep1.updatelr0.001oraclenonorm"),
    (dict(norm="layer_norm", update_lr=0.5, train_update_lr=0.01), "cls_5.mbs_25.ubs_5.numstep1.updatelr0.01layernorm"),
])
def test_experiment_folder_names_follow_main_py(flags, expected):
    assert Config.from_dict(flags).exp_string == expected


def test_derived_values_follow_main_py():
    c = Config.from_dict(dict(datasource="miniimagenet", max_pool=True, update_batch_size=1))
    assert (c.test_num_updates, c.samples_per_class, c.dim_input, c.clip_value) == (1, 16, 21168, 10.0)
    c = c.replace(train=False)
    assert (c.test_num_updates, c.samples_per_class) == (10, 2)
    o = Config.from_dict(dict(baseline="oracle", metatrain_iterations=70000, norm="None"))
    assert (o.effective_pretrain_iterations, o.effective_metatrain_iterations, o.dim_input) == (70000, 0, 3)
    assert Config().test_num_updates == 5 and Config(train=False).test_num_updates == 10


@pytest.mark.parametrize("flags, message", [
    (dict(datasource="cifar"), "--datasource='cifar': unknown datasource"),
    (dict(norm="group_norm"), "--norm='group_norm': unknown norm"),
    (dict(baseline="pretrain"), "--baseline='pretrain': unknown baseline"),
    (dict(datasource="omniglot", baseline="oracle"), "--baseline=oracle needs --datasource=sinusoid"),
    (dict(meta_batch_size=0), "--meta_batch_size=0: must be a positive integer"),
    (dict(update_batch_size=-3), "--update_batch_size=-3: must be a positive integer"),
    (dict(num_classes=0), "--num_classes=0: must be a positive integer"),
    (dict(metatrain_iterations=-1), "--metatrain_iterations=-1: must be >= 0"),
    (dict(test_iter=0), "--test_iter=0"),
    (dict(datasource="miniimagenet"), "--max_pool=False"),
    (dict(jit_compile=True, distribute="mirrored"), "--jit_compile=True: is not available with --distribute"),
])
def test_bad_flags_name_the_flag(flags, message):
    with pytest.raises(MamlError, match=None) as e:
        Config.from_dict(flags)
    assert message in str(e.value)
