"""Objectives by name from ``OBJECTIVES``; pure loss functions in ``losses``."""
from ssljax.objectives.base import (OBJECTIVES, Follower, LossInputs, LossOutput, Objective,
                                    ObjectiveInputs, Player, build_objective, objective_inputs,
                                    register_objective, select_features)

# Importing the modules fills the registry.
from ssljax.objectives import infonce as _infonce  # noqa: F401,E402
from ssljax.objectives import align_uniform as _align_uniform  # noqa: F401,E402
from ssljax.objectives import redundancy_reduction as _redundancy_reduction  # noqa: F401,E402
from ssljax.objectives import autoencoder as _autoencoder  # noqa: F401,E402
from ssljax.objectives import denoising_autoencoder as _denoising_autoencoder  # noqa: F401,E402
from ssljax.objectives import gan as _gan  # noqa: F401,E402
from ssljax.objectives import supervised as _supervised  # noqa: F401,E402
from ssljax.objectives import mae as _mae  # noqa: F401,E402
from ssljax.objectives import teacher_student as _teacher_student  # noqa: F401,E402
from ssljax.objectives import dino as _dino  # noqa: F401,E402

__all__ = ["OBJECTIVES", "Follower", "LossInputs", "LossOutput", "Objective", "ObjectiveInputs",
           "Player", "build_objective", "objective_inputs", "register_objective", "select_features"]
