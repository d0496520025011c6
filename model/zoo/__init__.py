"""The model zoo: edge networks with their published shapes, as Layer IR.

``MODELS`` maps a model's name to a function that builds its
:class:`~mensa.core.ir.Network` (every function takes keyword arguments with
published defaults); :func:`get` builds one by name.
"""

from mensa.core.errors import UserError
from mensa.model.zoo.detection import ssd_mobilenet_v2
from mensa.model.zoo.edgetpu import (efficientnet_edgetpu_l, efficientnet_edgetpu_m, efficientnet_edgetpu_s,
                                     mobilenet_edgetpu)
from mensa.model.zoo.kws import ds_cnn
from mensa.model.zoo.mobilenet import mobilenet_v2, mobilenet_v3_large, mobilenet_v3_small
from mensa.model.zoo.resnet import resnet50
from mensa.model.zoo.sequence import captioning, rnnt, seq2seq

__all__ = ["MODELS", "UnknownModelError", "get", "names"]


class UnknownModelError(UserError):
    """A model name that is not in the zoo."""


MODELS = {
    "mobilenet_v2": mobilenet_v2,
    "mobilenet_v3_large": mobilenet_v3_large,
    "mobilenet_v3_small": mobilenet_v3_small,
    "mobilenet_edgetpu": mobilenet_edgetpu,
    "efficientnet_edgetpu_s": efficientnet_edgetpu_s,
    "efficientnet_edgetpu_m": efficientnet_edgetpu_m,
    "efficientnet_edgetpu_l": efficientnet_edgetpu_l,
    "resnet50": resnet50,
    "ssd_mobilenet_v2": ssd_mobilenet_v2,
    "ds_cnn": ds_cnn,
    "rnnt": rnnt,
    "seq2seq": seq2seq,
    "captioning": captioning,
}


def names():
    """The zoo's model names, in registry order."""
    return tuple(MODELS)


def get(name, **kwargs):
    """Build the zoo model ``name``; raise :class:`UnknownModelError` naming the allowed names."""
    try:
        fn = MODELS[name]
    except KeyError:
        raise UnknownModelError(f"unknown model {name!r}; the zoo has: {', '.join(MODELS)}") from None
    return fn(**kwargs)
