"""Every rule family; importing this package registers them all."""

from . import bn, deploy, graph, layer_checks, schema  # noqa: F401
