"""MuJoCo models of the reference (rllab ``vendor/mujoco_models``), derived in code from Gymnasium's XML.

No third-party model file is committed. Both models start from the XML that ships with Gymnasium
(``gymnasium/envs/mujoco/assets``) and are edited with ``xml.etree`` to the rllab parameters:

* half-cheetah: Gymnasium's ``half_cheetah.xml`` is the rllab model (timestep 0.01, Euler, gears
  120/90/60/120/60/30, ctrlrange [-1, 1]). Only ``settotalmass="14"`` is replaced by the equivalent
  ``mj_setTotalmass`` + ``mj_setConst`` on the compiled model, because MuJoCo >= 3.3 deprecates the
  compiler attribute (and logs a warning to ``MUJOCO_LOG.TXT`` in the working directory).
* ant: Gymnasium's ``ant.xml`` differs from rllab's in three places, set back here: option
  timestep 0.02 (RK4 kept), default geom ``solref=".02 1" solimp=".8 .8 .01"``, and motors with
  ctrlrange [-150, 150] and gear 1 (Gymnasium: [-1, 1], gear 150). The rllab ``init_qpos``
  numeric (torso z 0.55, ankles +-1 rad) is present in both.
"""
from __future__ import annotations

import functools
import os
import xml.etree.ElementTree as ET

import gymnasium
import mujoco
import numpy as np

CHEETAH_TOTAL_MASS = 14.0
ANT_TIMESTEP = 0.02
ANT_CTRL_LIMIT = 150.0
ANT_GEOM_SOLREF = ".02 1"
ANT_GEOM_SOLIMP = ".8 .8 .01"


def gymnasium_asset(name: str) -> str:
    """Path of a model file shipped with Gymnasium (raises FileNotFoundError with the path tried)."""
    path = os.path.join(os.path.dirname(gymnasium.__file__), "envs", "mujoco", "assets", name)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Gymnasium model {name!r} not found at {path}; is gymnasium[mujoco] installed?")
    return path


@functools.lru_cache(maxsize=None)
def half_cheetah_xml() -> str:
    """rllab ``half_cheetah.xml`` without the deprecated ``settotalmass`` (applied after compiling)."""
    root = ET.parse(gymnasium_asset("half_cheetah.xml")).getroot()
    compiler = root.find("compiler")
    if compiler is None or float(compiler.get("settotalmass", "nan")) != CHEETAH_TOTAL_MASS:
        raise RuntimeError("Gymnasium's half_cheetah.xml changed: expected compiler settotalmass=14")
    del compiler.attrib["settotalmass"]
    return ET.tostring(root, encoding="unicode")


def build_half_cheetah() -> mujoco.MjModel:
    """Compile the half-cheetah and scale its masses to 14 exactly as ``settotalmass`` would."""
    model = mujoco.MjModel.from_xml_string(half_cheetah_xml())
    mujoco.mj_setTotalmass(model, CHEETAH_TOTAL_MASS)
    mujoco.mj_setConst(model, mujoco.MjData(model))
    return model


@functools.lru_cache(maxsize=None)
def ant_xml() -> str:
    """rllab ``ant.xml``, rebuilt from Gymnasium's ``ant.xml`` (see the module docstring)."""
    root = ET.parse(gymnasium_asset("ant.xml")).getroot()
    option = root.find("option")
    if option is None or option.get("integrator") != "RK4":
        raise RuntimeError("Gymnasium's ant.xml changed: expected <option integrator='RK4'>")
    option.set("timestep", str(ANT_TIMESTEP))
    geom_default = root.find("default/geom")
    if geom_default is None:
        raise RuntimeError("Gymnasium's ant.xml changed: expected a <default><geom> element")
    geom_default.set("solref", ANT_GEOM_SOLREF)
    geom_default.set("solimp", ANT_GEOM_SOLIMP)
    motors = root.findall("actuator/motor")
    if len(motors) != 8:
        raise RuntimeError(f"Gymnasium's ant.xml changed: expected 8 motors, found {len(motors)}")
    for motor in motors:
        motor.set("ctrllimited", "true")
        motor.set("ctrlrange", f"{-ANT_CTRL_LIMIT} {ANT_CTRL_LIMIT}")
        motor.attrib.pop("gear", None)  # MuJoCo's default gear is 1, as in rllab's model
    return ET.tostring(root, encoding="unicode")


def build_ant() -> mujoco.MjModel:
    """Compile the rllab ant model."""
    return mujoco.MjModel.from_xml_string(ant_xml())


def numeric(model: mujoco.MjModel, name: str) -> np.ndarray | None:
    """A ``<numeric>`` custom field of the model (rllab reads ``init_qpos``/``frame_skip`` this way)."""
    try:
        nid = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_NUMERIC, name)
    except Exception:  # pragma: no cover - older bindings
        return None
    if nid < 0:
        return None
    adr, size = model.numeric_adr[nid], model.numeric_size[nid]
    return np.array(model.numeric_data[adr : adr + size], dtype=np.float64)
