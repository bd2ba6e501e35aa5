"""Dataset builders declare what their pretraining items hold.

A dataset builder is a function ``builder(*, seed, **options) -> DataBundle`` registered in a
components table; every one takes ``seed`` (the run's), used or not, so the runner passes it
plainly. Wrapping it with :func:`data_source` declares the batch keys its pretraining items
produce, as a function of its options, so the recipe loader can check a recipe's method against
its data before building either::

    @data_source(produces=lambda options: {VIEWS, INDEX} if options["views"] else {IMAGE, INDEX})
    def procedural_shapes(*, seed: int = 0, views: str | None = "simclr", ...) -> DataBundle: ...

The options passed to ``produces`` are the recipe's, completed with the builder's defaults. The bundle
returned by a call carries the same set in ``DataBundle.produces``. ``labelled`` (a bool, or a function of
the options) says whether the bundle has labelled ``eval_train`` / ``eval_test``: evaluators that score
them are refused at load time when it has not.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from mmssl.data.bundle import DataBundle

Produces = Callable[[Mapping[str, Any]], Iterable[str]] | Iterable[str]
Labelled = Callable[[Mapping[str, Any]], bool] | bool


class DataSource:
    """A dataset builder plus the batch keys its pretraining items produce (see the module docstring)."""

    def __init__(
        self, build: Callable[..., DataBundle], produces: Produces, labelled: Labelled = True
    ) -> None:
        if "seed" not in inspect.signature(build).parameters:
            raise TypeError(
                f"dataset builder {build.__qualname__} must take a 'seed' keyword (the run's seed)"
            )
        self.build = build
        self.produces = produces
        self.labelled = labelled
        functools.update_wrapper(self, build)  # name, docstring and signature of the builder

    def options_with_defaults(self, options: Mapping[str, Any]) -> dict[str, Any]:
        bound = inspect.signature(self.build).bind_partial(**options)
        bound.apply_defaults()
        return dict(bound.arguments)

    def produced_keys(self, options: Mapping[str, Any]) -> frozenset[str]:
        """The batch keys of the pretraining items built with ``options``."""
        if not callable(self.produces):
            return frozenset(str(k) for k in self.produces)
        keys = self.produces(self.options_with_defaults(options))
        return frozenset(str(k) for k in keys)

    def gives_labelled_splits(self, options: Mapping[str, Any]) -> bool:
        """Whether the bundle built with ``options`` has labelled ``eval_train`` / ``eval_test``."""
        if not callable(self.labelled):
            return bool(self.labelled)
        return bool(self.labelled(self.options_with_defaults(options)))

    def __call__(self, *args: Any, **options: Any) -> DataBundle:
        bundle = self.build(*args, **options)
        bound = inspect.signature(self.build).bind(*args, **options)
        bundle.produces = self.produced_keys(bound.arguments)
        return bundle


def data_source(
    produces: Produces, labelled: Labelled = True
) -> Callable[[Callable[..., DataBundle]], DataSource]:
    """Declare the batch keys a dataset builder's pretraining items produce (a set, or a function of
    the options), and whether its bundle has labelled evaluation splits (default: yes)."""

    def wrap(build: Callable[..., DataBundle]) -> DataSource:
        return DataSource(build, produces, labelled)

    return wrap
