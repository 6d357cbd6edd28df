"""The RTSRN model family and the arena's designs, their exact re-parameterization and checkpoint loading."""

from rt4ksr.models.blocks import (
    BaseBlock,
    DConvBaseBlock,
    ExpandResConv,
    NAFBlock,
    RepBaseBlock,
    RepConv3x3,
    SimplifiedNAFBlock,
)
from rt4ksr.models.catalog import DESIGNS
from rt4ksr.models.checkpoint import CheckpointMismatchError, load_into, load_official, read_state_dict
from rt4ksr.models.reparam import reparameterize
from rt4ksr.models.rtsrn import RTSRN

__all__ = [
    "RTSRN", "BaseBlock", "DConvBaseBlock", "RepBaseBlock", "NAFBlock", "SimplifiedNAFBlock", "ExpandResConv",
    "RepConv3x3", "DESIGNS", "reparameterize", "load_official", "load_into", "read_state_dict",
    "CheckpointMismatchError",
]
