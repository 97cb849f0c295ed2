"""Encoders (by name from ``ENCODERS``) and the small heads objectives put around them."""
from ssljax.models.registry import ENCODERS, build_encoder, register_encoder

# Importing the modules fills the registry.
from ssljax.models import cnn as _cnn  # noqa: F401,E402
from ssljax.models import resnet as _resnet  # noqa: F401,E402
from ssljax.models import se_resnet as _se_resnet  # noqa: F401,E402
from ssljax.models import lenet as _lenet  # noqa: F401,E402
from ssljax.models import alexnet as _alexnet  # noqa: F401,E402
from ssljax.models import vgg as _vgg  # noqa: F401,E402
from ssljax.models import googlenet as _googlenet  # noqa: F401,E402
from ssljax.models import mobilenet as _mobilenet  # noqa: F401,E402
from ssljax.models import mlp as _mlp  # noqa: F401,E402
from ssljax.models import vit as _vit  # noqa: F401,E402

__all__ = ["ENCODERS", "build_encoder", "register_encoder"]
