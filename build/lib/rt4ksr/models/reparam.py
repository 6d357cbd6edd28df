"""Turning a trained model into its inference (deploy) form."""

from __future__ import annotations

import copy

from torch import nn


def deploy_(module: nn.Module) -> None:
    """Replace, in place and bottom-up, every re-parameterizable descendant by its ``to_deploy()`` form.

    Only for a model that is ours to change: a private copy, or a freshly built one (``is_train=False``).
    """
    for name, child in module.named_children():
        deploy_(child)
        if hasattr(child, "to_deploy"):
            setattr(module, name, child.to_deploy())


def reparameterize(model: nn.Module) -> nn.Module:
    """A new model in deploy form and eval mode; the training model and its weights stay untouched."""
    if hasattr(model, "to_deploy"):
        new = model.to_deploy()
    else:
        new = copy.deepcopy(model)
        deploy_(new)
    return new.eval()
