"""Objectives by name from ``OBJECTIVES``; pure loss functions in ``losses``."""
from ssljax.objectives.base import (OBJECTIVES, Objective, Player, build_objective,
                                    register_objective, select_features)

# Importing the modules fills the registry.
from ssljax.objectives import infonce as _infonce  # noqa: F401,E402

__all__ = ["OBJECTIVES", "Objective", "Player", "build_objective", "register_objective",
           "select_features"]
