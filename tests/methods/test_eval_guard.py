"""The eval-mode guard sees modules behind plain callables (issue 6).

A dropout layer in training mode makes every vote random: the smoothed classifier that
gets certified is not the user's model. ``check_eval_mode`` used to look at
``nn.Module`` models only, so wrapping the module in a lambda, a ``functools.partial``, a
bound method or a small class silently certified a random classifier.
"""

import functools

import pytest
import torch

from smoothcert.errors import InvalidParameterError
from smoothcert.methods._common import check_eval_mode
from smoothcert.methods.cohen import certify

GOOD = dict(sigma=0.5, n0=10, n=50, alpha=0.01, batch_size=50, seed=0)


def dropout_net(train: bool) -> torch.nn.Module:
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Dropout(0.5), torch.nn.Linear(4, 2))
    return net.train(train)


class Holder:
    """A plain class whose __call__ uses a module attribute."""

    def __init__(self, net):
        self.net = net

    def __call__(self, x):
        return self.net(x)


class Pipeline:
    """Modules two levels down: an attribute holding a dict of modules."""

    def __init__(self, net):
        self.stages = {"encoder": torch.nn.Identity().eval(), "head": net}

    def __call__(self, x):
        return self.stages["head"](self.stages["encoder"](x))


def _wrap(kind, net):
    if kind == "lambda":
        return lambda x: net(x)
    if kind == "partial":
        return functools.partial(torch.nn.Module.__call__, net)
    if kind == "partial_keyword":
        return functools.partial(lambda x, *, model: model(x), model=net)
    if kind == "bound_method":
        return net.forward
    if kind == "holder":
        return Holder(net)
    if kind == "holder_method":
        return Holder(net).__call__
    if kind == "pipeline":
        return Pipeline(net)
    if kind == "wraps":

        @functools.wraps(net.forward)
        def wrapped(x):
            return net(x)

        return wrapped
    raise AssertionError(kind)


KINDS = [
    "lambda",
    "partial",
    "partial_keyword",
    "bound_method",
    "holder",
    "holder_method",
    "pipeline",
    "wraps",
]


@pytest.mark.parametrize("kind", KINDS)
def test_training_mode_module_behind_a_callable_is_rejected(kind):
    model = _wrap(kind, dropout_net(train=True))
    with pytest.raises(InvalidParameterError, match="eval mode") as info:
        check_eval_mode(model)
    msg = str(info.value)
    assert "training = True" in msg and "model" in msg
    # The path from the callable to the module is named.
    assert "(a module the model calls)" in msg


@pytest.mark.parametrize("kind", KINDS)
def test_eval_mode_module_behind_a_callable_is_accepted(kind):
    check_eval_mode(_wrap(kind, dropout_net(train=False)))


def test_message_names_the_path_and_the_submodule():
    net = dropout_net(train=False)
    net[1].train()  # only the dropout layer
    with pytest.raises(InvalidParameterError) as info:
        check_eval_mode(functools.partial(lambda x, *, model: model(x), model=net))
    assert "model.keywords['model']" in str(info.value)
    assert "submodule '1'" in str(info.value)
    with pytest.raises(InvalidParameterError) as info:
        check_eval_mode(Pipeline(net))
    assert "model.stages['head']" in str(info.value)


def test_module_itself_keeps_its_message():
    net = dropout_net(train=False)
    net[1].train()
    with pytest.raises(InvalidParameterError, match="submodule '1'.training = True"):
        check_eval_mode(net)


def test_plain_callables_without_modules_and_cycles_are_fine():
    check_eval_mode(lambda x: torch.zeros(x.shape[0], 2))
    holder = Holder(None)
    holder.me = holder  # a reference cycle
    holder.net = [holder, {"a": holder}]
    check_eval_mode(holder)


@pytest.mark.parametrize("kind", ["lambda", "partial", "bound_method", "holder"])
def test_certify_rejects_training_dropout_behind_a_callable(kind):
    # End to end through the public API: rejected before any sampling, and the same
    # wrapper certifies once the module is in eval mode.
    net = dropout_net(train=True)
    with pytest.raises(InvalidParameterError, match="eval mode"):
        certify(_wrap(kind, net), torch.zeros(3), **GOOD)
    net.eval()
    res = certify(_wrap(kind, net), torch.zeros(3), **GOOD)
    assert res.abstained or res.prediction in (0, 1)
