"""Recurrent layers: RNN and LSTM (Caffe's RecurrentLayer, which unrolls a small net over the
time steps), and the single-step LSTMUnit.

Bottoms of RNN/LSTM: x (T, N, ...), cont (T, N) marking sequence continuations, an optional
static input x_static (N, ...), and with expose_hidden the initial states (1, N, num_output)
(h_0 for RNN; h_0 and c_0 for LSTM). Tops: (T, N, num_output), then with expose_hidden the
final states. The learned blobs are those of the unrolled net's InnerProduct layers, in the
order the unrolled net creates them.
"""

from __future__ import annotations

from typing import Any, Iterator, Optional

from ._util import bottom, count, differ, fmt, top_count
from .base import IN_PLACE_OK, IN_PLACE_WRONG, Dim, LayerSpec, Problem, ShapeContext, fail, \
    register

RECURRENT = "recurrent_param"


class RecurrentSpec(LayerSpec):
    family = "recurrent"
    param_field = RECURRENT
    in_place = IN_PLACE_WRONG
    #: How many recurrent state blobs the architecture carries (h, and c for LSTM).
    num_states = 1
    #: Multiple of num_output in the gate dimension (4 gates for LSTM).
    gates = 1

    def exposed(self, layer: Any) -> int:
        return self.num_states if layer.recurrent_param.expose_hidden else 0

    def bottom_range(self, layer: Any) -> tuple[int, Optional[int]]:
        minimum = 2 + self.exposed(layer)
        return minimum, minimum + 1

    def top_range(self, layer: Any) -> tuple[int, Optional[int]]:
        n = 1 + self.exposed(layer)
        return n, n

    def has_static_input(self, layer: Any) -> bool:
        return len(layer.bottom) > 2 + self.exposed(layer)

    def check(self, layer: Any) -> Iterator[Problem]:
        if layer.recurrent_param.num_output == 0:
            yield Problem("L120", "num_output is 0 or missing; a recurrent layer needs a "
                                  "positive num_output", (RECURRENT, "num_output"))

    def shape(self, layer: Any, bottoms: list, context: ShapeContext) -> list:
        hidden = layer.recurrent_param.num_output
        x, cont = bottom(bottoms, 0), bottom(bottoms, 1)
        steps: Dim = None
        streams: Dim = None
        if x is not None:
            if len(x) < 2:
                fail("L120", f"x (bottom 0) must have at least 2 axes (time steps, streams, "
                             f"...); got {fmt(x)}", ("bottom", 0))
            steps, streams = x[0], x[1]
        if cont is not None:
            if len(cont) != 2:
                fail("L120", f"cont (bottom 1) must be (time steps, streams); got {fmt(cont)}",
                     ("bottom", 1))
            if differ(steps, cont[0]) or differ(streams, cont[1]):
                fail("L120", f"cont {fmt(cont)} must match the first two axes of x {fmt(x)}",
                     ("bottom", 1))
            steps = steps if steps is not None else cont[0]
            streams = streams if streams is not None else cont[1]
        index = 2
        if self.has_static_input(layer):
            static = bottom(bottoms, 2)
            if static is not None:
                if len(static) < 1 or differ(static[0], streams):
                    fail("L120", f"the static input (bottom 2) must be (streams, ...) with "
                                 f"{streams} streams; got {fmt(static)}", ("bottom", 2))
                streams = streams if streams is not None else static[0]
            index = 3
        state = (1, streams, hidden)
        for i in range(index, index + self.exposed(layer)):
            given = bottom(bottoms, i)
            if given is not None and (len(given) != 3 or any(
                    differ(a, b) for a, b in zip(given, state))):
                fail("L120", f"the initial state (bottom {i}) must be {fmt(state)}; got "
                             f"{fmt(given)}", ("bottom", i))
        tops = [(steps, streams, hidden)] + [state] * self.exposed(layer)
        return tops[:top_count(self, layer)]

    def input_sizes(self, layer: Any, bottoms: list) -> tuple[Dim, Dim]:
        """Values per time step and stream of x (axis 2 on), and of x_static (axis 1 on)."""
        x = bottom(bottoms, 0)
        size = count(x, 2) if x is not None and len(x) >= 2 else None
        static_size: Dim = None
        if self.has_static_input(layer):
            static = bottom(bottoms, 2)
            static_size = count(static, 1) if static is not None and len(static) >= 1 else None
        return size, static_size


@register
class RNNSpec(RecurrentSpec):
    """h_t = tanh(W_hh h_{t-1} + W_xh x_t + b_h); o_t = tanh(W_ho h_t + b_o). Blobs: W_xh,
    b_h, [W_xh_static], W_hh, W_ho, b_o."""

    type = "RNN"

    def blob_count(self, layer: Any) -> int:
        return 5 + int(self.has_static_input(layer))

    def blob_shapes(self, layer: Any, bottoms: list) -> Optional[list]:
        h = layer.recurrent_param.num_output
        size, static_size = self.input_sizes(layer, bottoms)
        static = [(h, static_size)] if self.has_static_input(layer) else []
        return [(h, size), (h,)] + static + [(h, h), (h, h), (h,)]


@register
class LSTMSpec(RecurrentSpec):
    """The gates i, f, o, g come from W_hc h_{t-1} + W_xc x_t + b_c (4 num_output values).
    Blobs: W_xc (4H, input), b_c (4H,), [W_xc_static (4H, static input)], W_hc (4H, H)."""

    type = "LSTM"
    num_states = 2

    def blob_count(self, layer: Any) -> int:
        return 3 + int(self.has_static_input(layer))

    def blob_shapes(self, layer: Any, bottoms: list) -> Optional[list]:
        h = layer.recurrent_param.num_output
        size, static_size = self.input_sizes(layer, bottoms)
        static = [(4 * h, static_size)] if self.has_static_input(layer) else []
        return [(4 * h, size), (4 * h,)] + static + [(4 * h, h)]


@register
class LSTMUnitSpec(LayerSpec):
    """One LSTM step: bottoms c_{t-1} (1, N, D), gate inputs (1, N, 4D), cont (1, N); tops c_t
    and h_t, both (1, N, D)."""

    type = "LSTMUnit"
    family = "recurrent"
    min_bottoms = max_bottoms = 3
    min_tops = max_tops = 2
    in_place = IN_PLACE_OK  # forward reads c_{t-1}[i] before writing c_t[i]

    def shape(self, layer: Any, bottoms: list, context: ShapeContext) -> list:
        c_prev, gates, cont = (bottom(bottoms, i) for i in range(3))
        streams: Dim = None
        for index, shape in enumerate((c_prev, gates, cont)):
            if shape is None:
                continue
            rank = 2 if index == 2 else 3
            if len(shape) != rank or differ(shape[0], 1) or differ(shape[1], streams):
                fail("L120", f"bottom {index} must be (1, N{', D' if rank == 3 else ''}) with the "
                             f"same N as the others; got {fmt(shape)}", ("bottom", index))
            streams = streams if streams is not None else shape[1]
        if c_prev is not None and gates is not None and c_prev[2] is not None and \
                differ(gates[2], 4 * c_prev[2]):
            fail("L120", f"the gate input {fmt(gates)} must have 4 x {c_prev[2]} values per "
                         f"stream for the cell state {fmt(c_prev)}", ("bottom", 1))
        if c_prev is not None:
            size = c_prev[2]
        elif gates is not None and gates[2] is not None and gates[2] % 4 == 0:
            size = gates[2] // 4
        else:
            size = None
        return [(1, streams, size)] * top_count(self, layer)
