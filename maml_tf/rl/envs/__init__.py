"""Meta-RL task environments of cbfinn/maml_rl on Gymnasium + MuJoCo, registered on import.

Ids (``maml_tf/<Name>-v0``): PointGoal, HalfCheetahVel, HalfCheetahDir, AntVel, AntDir, AntGoal,
each with an ``...Oracle`` variant, and GridWorld4. See ``ENV_INFO`` for sizes and horizons,
:mod:`maml_tf.rl.envs.base` for the task API (``sample_tasks``, ``set_task``,
``reset(options={"task": ...})``), and :func:`make_vector_env` for one sub-env per task.
"""
from maml_tf.rl.envs.ant import (
    AntDirEnv,
    AntDirOracleEnv,
    AntGoalEnv,
    AntGoalOracleEnv,
    AntVelEnv,
    AntVelOracleEnv,
)
from maml_tf.rl.envs.base import TaskEnv, direction_of, normalized_to_bounds
from maml_tf.rl.envs.grid_world import GridWorld4Env
from maml_tf.rl.envs.half_cheetah import (
    HalfCheetahDirEnv,
    HalfCheetahDirOracleEnv,
    HalfCheetahVelEnv,
    HalfCheetahVelOracleEnv,
)
from maml_tf.rl.envs.mujoco_env import MujocoTaskEnv
from maml_tf.rl.envs.point import PointGoalEnv, PointGoalOracleEnv, point_step_batch
from maml_tf.rl.envs.point_vector import PointGoalVectorEnv
from maml_tf.rl.envs.registration import (
    ENV_IDS,
    ENV_INFO,
    FAMILIES,
    EnvInfo,
    env_class,
    env_info,
    make_env,
    make_vector_env,
    register_envs,
    sample_tasks,
    set_tasks,
)

register_envs()

__all__ = [
    "ENV_IDS", "ENV_INFO", "FAMILIES", "EnvInfo", "MujocoTaskEnv", "TaskEnv",
    "AntDirEnv", "AntDirOracleEnv", "AntGoalEnv", "AntGoalOracleEnv", "AntVelEnv", "AntVelOracleEnv",
    "GridWorld4Env", "HalfCheetahDirEnv", "HalfCheetahDirOracleEnv", "HalfCheetahVelEnv",
    "HalfCheetahVelOracleEnv", "PointGoalEnv", "PointGoalOracleEnv", "PointGoalVectorEnv",
    "direction_of", "env_class", "env_info", "make_env", "make_vector_env", "normalized_to_bounds",
    "point_step_batch", "register_envs", "sample_tasks", "set_tasks",
]
