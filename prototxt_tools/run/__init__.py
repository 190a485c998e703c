"""The NumPy executor: Caffe nets run forward with Caffe's exact semantics.

    from prototxt_tools.run import Executor
    outputs = Executor("deploy.prototxt", "weights.caffemodel").forward({"data": image})
"""

from .executor import Executor, load_net
from .fillers import init_weights
from .plugins import load_plugin, register_layer

__all__ = ["Executor", "init_weights", "load_net", "load_plugin", "register_layer"]
