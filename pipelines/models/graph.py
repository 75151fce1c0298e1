"""Build order: a model comes after every model it reads, as found in its SQL."""

from __future__ import annotations

from collections.abc import Iterable
from graphlib import CycleError, TopologicalSorter

from .project import Model, ModelsError


def build_order(models: Iterable[Model]) -> list[Model]:
    """Sorts ``models`` so that each one follows the models it reads.

    Names that are not models (the loaded source tables) impose no order. Among models that
    are ready together, staging comes before marts, then by name, so the order is stable.

    Raises:
        ModelsError: The models read each other in a cycle.
    """
    by_name = {model.name: model for model in models}
    sorter: TopologicalSorter[str] = TopologicalSorter()
    for model in by_name.values():
        sorter.add(model.name, *(name for name in model.reads if name in by_name))
    try:
        sorter.prepare()
    except CycleError as exc:
        raise ModelsError(f"models read each other in a cycle: {' -> '.join(exc.args[1])}") from exc
    order: list[Model] = []
    while sorter.is_active():
        ready = sorted((by_name[name] for name in sorter.get_ready()),
                       key=lambda model: (model.layer != "staging", model.name))
        order.extend(ready)
        sorter.done(*(model.name for model in ready))
    return order
