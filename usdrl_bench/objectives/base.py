"""The base class of pretraining objectives (the public contract: ``usdrl_bench.Objective``)."""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any, Callable, Sequence, TypeVar

from torch import Tensor, nn

from usdrl_bench.registry import OBJECTIVES

if TYPE_CHECKING:
    from usdrl_bench.data.augment import SampleKeys
    from usdrl_bench.skeleton import Layout

__all__ = ["Objective", "register_objective"]

O = TypeVar("O", bound=type)


class Objective(nn.Module):
    """A self-supervised pretraining objective.

    Subclass it, take the encoder first in the constructor and options as keywords (``(encoder, **options)``:
    a protocol's ``objective_options`` are checked against this signature), set ``num_views`` (how many
    augmented views of each sample the trainer makes: MG-FD 4, InfoNCE 2), and implement :meth:`forward`.
    The objective owns its heads (projectors); the encoder is passed to :meth:`forward`, not held as a
    submodule. Register it with ``@usdrl_bench.register_objective("name")``.

    Data-parallel runs: the trainer wraps encoder and objective in DDP and turns BatchNorm layers into
    global-batch ones; a loss built on batch statistics should gather its projections with
    :func:`usdrl_bench.distributed.gather_with_grad` (the identity in one process), and a mean of per-sample
    losses computed on the local shard should be taken with :func:`usdrl_bench.distributed.batch_mean`.
    The ranks may then hold different numbers of samples (the last, smaller batch of an epoch, or a batch
    the process count does not divide; a rank may hold none): declare ``uneven_shards = True`` once the
    loss is the global batch's for any split. An objective that does not declare it is refused, with its
    name, by a data-parallel run whose batches do not split evenly, rather than training another model.
    """

    #: augmented views per sample the trainer makes for this objective
    num_views: int = 2
    #: True when the loss and every statistic are the global batch's for shards of any sizes (see above)
    uneven_shards: bool = False

    def __init__(self, encoder: nn.Module | None = None, **options: Any) -> None:
        super().__init__()

    def start_epoch(self, epoch: int, epochs: int) -> None:
        """Called by the trainer before each epoch (0-based ``epoch`` of ``epochs``; again for the first epoch
        after a resume): for objectives whose loss changes over the schedule (AimCLR's nearest-neighbour
        mining from epoch 150). Keep what it sets a plain Python value derived from ``epoch``, so that a
        resumed run equals an uninterrupted one. Default: nothing."""

    def make_views(self, x: Tensor, num_frames: Tensor, *, out_frames: int, keys: "SampleKeys", layout: "Layout",
                   stream: str) -> list[Tensor] | None:
        """The views of one batch, when the objective makes its own (default: None, the protocol's
        ``pretrain.views`` through :func:`usdrl_bench.make_views`, then the row's stream).

        Override it for augmentations of the method's own (AimCLR's extreme views) or several modalities at
        once (CMD: joint, motion and bone of each view, :func:`usdrl_bench.to_stream`). Draw every random
        number from ``keys`` (``draw = keys.drawer(x.device)``; ``draw(shape)`` is U[0, 1) per sample), so
        that a sample's views depend on (seed, epoch, sample index) only: data-parallel runs then see the
        views of one process, and nothing reads the device on the host.

        Args:
            x: ``(N, C, T_max, V, M)`` joints of the batch, zero-padded beyond ``num_frames``.
            num_frames: ``(N,)`` valid frames per sample (checked once per dataset: in ``[1, T_max]``).
            out_frames: T of the encoder's input.
            keys: the batch's per-sample random streams (:class:`usdrl_bench.SampleKeys`).
            layout: the data's skeleton layout (bones, left/right pairs).
            stream: the row's input stream (``joint``, ``motion``, ``bone``): the views the encoder gets.
        Returns:
            the tensors :meth:`forward` receives as ``views``, or None for the protocol's views.
        """
        return None

    def forward(self, encoder: nn.Module, views: Sequence[Tensor]) -> tuple[Tensor, dict[str, Any]]:
        """One step's loss.

        Args:
            encoder: the encoder being trained (``encoder(x) -> (N, 2H)``, ``encoder.forward_features(x) ->
                ((N, H), (N, H), (N, 2H))``, ``encoder.forward_dense(x)`` -> tokens).
            views: ``num_views`` tensors ``(N, C, T, V, M)``, augmented views of the same N samples.
        Returns:
            ``(loss, logs)``: the scalar loss, and named values to log (detached 0-d tensors, read by the
            trainer off the hot path; floats also work).
        """
        raise NotImplementedError(f"{type(self).__name__} must implement forward(encoder, views)")


def register_objective(name: str, *, description: str = "") -> Callable[[O], O]:
    """Class decorator registering an :class:`Objective` subclass as objective ``name``.

    Raises:
        TypeError: the class is not an :class:`Objective` subclass, its constructor does not take the encoder
            first, or ``num_views`` is not a positive int.
        ValueError: ``name`` is taken by another component.
    """

    def decorator(cls: O) -> O:
        if not (isinstance(cls, type) and issubclass(cls, Objective)):
            raise TypeError(f"register_objective({name!r}) decorates a subclass of usdrl_bench.Objective, got {cls!r}")
        params = list(inspect.signature(cls.__init__).parameters.values())[1:]  # after self
        if not params or params[0].kind not in (inspect.Parameter.POSITIONAL_ONLY,
                                                inspect.Parameter.POSITIONAL_OR_KEYWORD):
            raise TypeError(f"register_objective({name!r}): {cls.__name__}.__init__ must take the encoder as its "
                            "first argument: __init__(self, encoder, **options)")
        views = getattr(cls, "num_views", None)
        if isinstance(views, bool) or not isinstance(views, int) or views < 1:
            raise TypeError(f"register_objective({name!r}): {cls.__name__}.num_views must be a positive int, got {views!r}")
        OBJECTIVES.register(name, description=description or (cls.__doc__ or "").strip().split("\n")[0])(cls)
        return cls

    return decorator
