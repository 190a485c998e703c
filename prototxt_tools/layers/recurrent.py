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

from ._np import np
from ._util import bottom, count, differ, fmt, top_count
from .base import IN_PLACE_OK, IN_PLACE_WRONG, Dim, LayerSpec, Problem, ShapeContext, \
    TorchCode, TorchContext, TorchUnsupported, elements, fail, register, torch_helper

RECURRENT = "recurrent_param"

#: The attribute of the forward context where RNN/LSTM layers without expose_hidden keep their
#: final states between forward passes, as Caffe does (it copies h_T, c_T into h_0, c_0 before
#: each pass): a dict {layer name: [state arrays]} the caller provides. Without it every pass
#: starts from zero states, which is Caffe's first pass (and every pass where cont_1 is 0).
STATE_ATTRIBUTE = "state"


def _unit_sigmoid(x: Any) -> Any:
    """LSTMUnitLayer's own sigmoid: 1 / (1 + exp(-x))."""
    with np.errstate(over="ignore"):
        y = np.negative(x)
        np.exp(y, out=y)
    y += 1
    return np.reciprocal(y, out=y)


def _unit_tanh(x: Any) -> Any:
    """LSTMUnitLayer's own tanh: 2 sigmoid(2 x) - 1."""
    y = _unit_sigmoid(x * 2)
    y *= 2
    y -= 1
    return y


def lstm_unit(c_prev: Any, gates: Any, cont: Any) -> tuple:
    """LSTMUnitLayer::Forward_cpu on (N, D) states, (N, 4D) gate inputs and (N,) cont, gates
    in the order i, f, o, g: f = 0 where cont == 0, else cont * sigmoid(f');
    c = f c_prev + i g; h = o tanh(c). Returns (c, h)."""
    size = c_prev.shape[-1]
    i = _unit_sigmoid(gates[:, 0 * size:1 * size])
    f = _unit_sigmoid(gates[:, 1 * size:2 * size])
    o = _unit_sigmoid(gates[:, 2 * size:3 * size])
    g = _unit_tanh(gates[:, 3 * size:4 * size])
    cont = cont.reshape(-1, 1)
    f = np.where(cont == 0, 0, cont * f).astype(gates.dtype, copy=False)
    c = f * c_prev
    c += i * g
    h = o * _unit_tanh(c)
    return c, h


class RecurrentSpec(LayerSpec):
    family = "recurrent"
    param_field = RECURRENT
    in_place = IN_PLACE_WRONG
    #: How many recurrent state blobs the architecture carries (h, and c for LSTM).
    num_states = 1
    #: Multiple of num_output in the gate dimension (4 gates for LSTM).
    gates = 1

    def macs(self, layer: Any, bottoms: list, tops: list) -> Optional[int]:
        """Every weight matrix once per time step and sequence: T x N x (sum of their
        sizes)."""
        x = bottoms[0] if bottoms else None
        blobs = self.blob_shapes(layer, bottoms)
        if x is None or len(x) < 2 or None in x[:2] or blobs is None:
            return None
        sizes = [elements(shape) for shape in blobs if shape is not None and len(shape) == 2]
        if None in sizes:
            return None
        return x[0] * x[1] * sum(sizes)

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

    # -- forward -------------------------------------------------------------------------------
    def step(self, layer: Any, gate_input: Any, cont: Any, states: list, weights: dict) -> tuple:
        """One time step: (output_t, new states) from the input transform W x_t + b (+ the
        static transform) and cont_t (N,)."""
        raise NotImplementedError

    def weight_names(self, layer: Any) -> list:
        raise NotImplementedError

    def forward(self, layer: Any, bottoms: list, blobs: list, context: Any) -> list:
        """The unrolled net Caffe builds, computed step by step: the input transform of all
        steps at once (InnerProduct, axis 2), the static input's (axis 1) added to every step,
        h_{t-1} multiplied by cont_t (Scale, axis 0) before the recurrent product. The initial
        states are the exposed bottoms, or the previous pass's final states (see
        STATE_ATTRIBUTE), or zeros."""
        hidden = layer.recurrent_param.num_output
        x, cont = bottoms[0], bottoms[1]
        dtype = x.dtype
        if x.ndim < 2 or cont.shape != x.shape[:2]:
            raise ValueError(f"cont {cont.shape} must be (time steps, streams) matching the "
                             f"first two axes of x {x.shape}")
        steps, streams = x.shape[:2]
        names = self.weight_names(layer)
        if len(blobs) != len(names):
            raise ValueError(f"{self.type} needs {len(names)} blobs ({', '.join(names)}); got "
                             f"{len(blobs)}")
        weights = {name: np.asarray(blob, dtype=dtype) for name, blob in zip(names, blobs)}
        w_x, b_x = names[0], names[1]
        inputs = x.reshape(steps, streams, -1)
        gates = self.gates * hidden
        transform = weights[w_x].reshape(gates, -1)
        if transform.shape[1] != inputs.shape[2]:
            raise ValueError(f"{w_x} has {transform.shape[1]} inputs but x has "
                             f"{inputs.shape[2]} values per step")
        projected = np.matmul(inputs, transform.T)
        projected += weights[b_x].reshape(gates)
        index = 2
        if self.has_static_input(layer):
            static = bottoms[2].reshape(streams, -1)
            w_static = weights[names[2]].reshape(gates, -1)
            projected += np.matmul(static, w_static.T)[None]
            index = 3
        state_shape = (1, streams, hidden)
        exposed = self.exposed(layer)
        store = getattr(context, STATE_ATTRIBUTE, None)
        if exposed:
            states = []
            for i in range(index, index + exposed):
                if tuple(bottoms[i].shape) != state_shape:
                    raise ValueError(f"bottom {i} must be {state_shape}; got {bottoms[i].shape}")
                states.append(np.asarray(bottoms[i], dtype=dtype).reshape(streams, hidden))
        else:
            kept = store.get(layer.name) if isinstance(store, dict) else None
            if kept is not None and all(s.shape == (streams, hidden) for s in kept):
                states = [s.astype(dtype, copy=False) for s in kept]
            else:
                states = [np.zeros((streams, hidden), dtype) for _ in range(self.num_states)]
        outputs = np.empty((steps, streams, hidden), dtype)
        for t in range(steps):
            outputs[t], states = self.step(layer, projected[t], cont[t].astype(dtype, copy=False),
                                           states, weights)
        if not exposed and isinstance(store, dict):
            store[layer.name] = [s.copy() for s in states]
        tops = [outputs]
        if exposed:
            tops.extend(s.reshape(state_shape) for s in states)
        return tops

    # -- PyTorch -------------------------------------------------------------------------------
    #: The helper module class the emitted code instantiates.
    torch_class = ""

    def torch(self, layer: Any, context: TorchContext) -> TorchCode:
        """A helper nn.Module (CaffeRNN, CaffeLSTM) whose parameters are the Caffe blobs under
        their unrolled-net names, called on x, cont[, x_static][, h0[, c0]]; it loops over the
        T time steps from zero states (or the exposed initial states)."""
        hidden = layer.recurrent_param.num_output
        if hidden <= 0:
            raise TorchUnsupported("num_output is 0")
        names = self.weight_names(layer)
        rows = self.gates * hidden
        size, static_size = self.input_sizes(layer, context.bottom_shapes)
        blob_shapes = list(context.blob_shapes)
        if size is None and blob_shapes:
            size = _columns(blob_shapes[0], rows)
        if self.has_static_input(layer) and static_size is None and len(blob_shapes) > 2:
            static_size = _columns(blob_shapes[2], rows)
        if size is None or (self.has_static_input(layer) and static_size is None):
            raise TorchUnsupported("the input size per time step is unknown (give "
                                   "--input-shape)")
        shapes = {names[0]: (rows, size), names[1]: (rows,)}
        if self.has_static_input(layer):
            shapes[names[2]] = (rows, static_size)
        shapes.update(self.torch_recurrent_shapes(hidden))
        state = {name: _blob_as(index, shapes[name]) for index, name in enumerate(names)}
        args = [str(size), str(hidden)]
        if self.has_static_input(layer):
            args.append(f"static_size={static_size}")
        module = f"{self.torch_class}({', '.join(args)})"
        call = ["{b0}", "{b1}"]
        index = 2
        if self.has_static_input(layer):
            call.append("{b2}")
            index = 3
        exposed = self.exposed(layer)
        if not exposed:
            return TorchCode(f"{{m}}({', '.join(call)})[0]", module=module, state=state,
                             helpers=(self.torch_class,), fresh=True)
        call += [f"{name}={{b{index + i}}}" for i, name in enumerate(("h0", "c0")[:exposed])]
        return TorchCode(f"{{m}}({', '.join(call)})", module=module, state=state,
                         helpers=(self.torch_class,), tuple_tops=True)

    def torch_recurrent_shapes(self, hidden: int) -> dict:
        """The shapes of the blobs after the input transforms, by name."""
        raise NotImplementedError


@register
class RNNSpec(RecurrentSpec):
    """h_t = tanh(W_hh h_{t-1} + W_xh x_t + b_h); o_t = tanh(W_ho h_t + b_o). Blobs: W_xh,
    b_h, [W_xh_static], W_hh, W_ho, b_o."""

    type = "RNN"
    torch_class = "CaffeRNN"

    def blob_count(self, layer: Any) -> int:
        return 5 + int(self.has_static_input(layer))

    def blob_shapes(self, layer: Any, bottoms: list) -> Optional[list]:
        h = layer.recurrent_param.num_output
        size, static_size = self.input_sizes(layer, bottoms)
        static = [(h, static_size)] if self.has_static_input(layer) else []
        return [(h, size), (h,)] + static + [(h, h), (h, h), (h,)]

    def weight_names(self, layer: Any) -> list:
        static = ["W_xh_static"] if self.has_static_input(layer) else []
        return ["W_xh", "b_h"] + static + ["W_hh", "W_ho", "b_o"]

    def step(self, layer: Any, gate_input: Any, cont: Any, states: list, weights: dict) -> tuple:
        # h_t = tanh(W_hh (cont_t h_{t-1}) + W_xh x_t + b_h [+ W_xh_static x_static]);
        # o_t = tanh(W_ho h_t + b_o)
        hidden = states[0].shape[1]
        conted = states[0] * cont[:, None]
        h = np.matmul(conted, weights["W_hh"].reshape(hidden, hidden).T)
        h += gate_input
        np.tanh(h, out=h)
        o = np.matmul(h, weights["W_ho"].reshape(hidden, hidden).T)
        o += weights["b_o"].reshape(hidden)
        np.tanh(o, out=o)
        return o, [h]

    def torch_recurrent_shapes(self, hidden: int) -> dict:
        return {"W_hh": (hidden, hidden), "W_ho": (hidden, hidden), "b_o": (hidden,)}


@register
class LSTMSpec(RecurrentSpec):
    """The gates i, f, o, g come from W_hc h_{t-1} + W_xc x_t + b_c (4 num_output values).
    Blobs: W_xc (4H, input), b_c (4H,), [W_xc_static (4H, static input)], W_hc (4H, H)."""

    type = "LSTM"
    num_states = 2
    gates = 4
    torch_class = "CaffeLSTM"

    def blob_count(self, layer: Any) -> int:
        return 3 + int(self.has_static_input(layer))

    def blob_shapes(self, layer: Any, bottoms: list) -> Optional[list]:
        h = layer.recurrent_param.num_output
        size, static_size = self.input_sizes(layer, bottoms)
        static = [(4 * h, static_size)] if self.has_static_input(layer) else []
        return [(4 * h, size), (4 * h,)] + static + [(4 * h, h)]

    def weight_names(self, layer: Any) -> list:
        static = ["W_xc_static"] if self.has_static_input(layer) else []
        return ["W_xc", "b_c"] + static + ["W_hc"]

    def step(self, layer: Any, gate_input: Any, cont: Any, states: list, weights: dict) -> tuple:
        # gate_input_t = W_hc (cont_t h_{t-1}) + W_xc x_t + b_c [+ W_xc_static x_static];
        # then LSTMUnit(c_{t-1}, gate_input_t, cont_t) -> c_t, h_t
        h_prev, c_prev = states
        hidden = h_prev.shape[1]
        conted = h_prev * cont[:, None]
        gates = np.matmul(conted, weights["W_hc"].reshape(4 * hidden, hidden).T)
        gates += gate_input
        c, h = lstm_unit(c_prev, gates, cont)
        return h, [h, c]

    def torch_recurrent_shapes(self, hidden: int) -> dict:
        return {"W_hc": (4 * hidden, hidden)}


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

    def forward(self, layer: Any, bottoms: list, blobs: list, context: Any) -> list:
        c_prev, gates, cont = bottoms
        if c_prev.ndim != 3 or gates.ndim != 3 or cont.ndim != 2 or c_prev.shape[0] != 1 \
                or gates.shape[:2] != c_prev.shape[:2] or cont.shape != c_prev.shape[:2] \
                or gates.shape[2] != 4 * c_prev.shape[2]:
            raise ValueError(f"LSTMUnit needs c_prev (1, N, D), gates (1, N, 4D) and cont "
                             f"(1, N); got {c_prev.shape}, {gates.shape}, {cont.shape}")
        c, h = lstm_unit(c_prev[0], gates[0], cont[0].astype(c_prev.dtype, copy=False))
        return [c[None], h[None]]

    def torch(self, layer: Any, context: TorchContext) -> TorchCode:
        return TorchCode("caffe_lstm_unit({b0}, {b1}, {b2})", helpers=("caffe_lstm_unit",),
                         tuple_tops=True)


# -- PyTorch ---------------------------------------------------------------------------------------

def _columns(shape: Any, rows: int) -> Optional[int]:
    """Columns of a stored (rows, columns) weight blob, whatever its stored axes."""
    total = int(np.prod(shape, dtype=np.int64)) if shape is not None else 0
    return total // rows if rows and total and total % rows == 0 else None


def _blob_as(index: int, shape: tuple) -> Any:
    """State conversion: Caffe blob ``index`` reshaped to the parameter's shape."""
    return lambda blobs, fused: np.reshape(blobs[index], shape)


torch_helper("caffe_lstm_unit", '''
def caffe_lstm_unit(c_prev, gates, cont):
    """Caffe's LSTMUnit: ``gates`` holds the pre-activations of the gates in Caffe's order
    i, f, o, g along its last axis; i, f, o = sigmoid, g = tanh, and the forget gate is
    multiplied by ``cont`` (0 where a new sequence starts, which drops c_prev);
    c = f * c_prev + i * g, h = o * tanh(c). Returns (c, h)."""
    i, f, o, g = gates.chunk(4, dim=-1)
    f = torch.sigmoid(f) * cont.unsqueeze(-1)
    c = f * c_prev + torch.sigmoid(i) * torch.tanh(g)
    h = torch.sigmoid(o) * torch.tanh(c)
    return c, h
''')

torch_helper("CaffeLSTM", '''
class CaffeLSTM(nn.Module):
    """Caffe's LSTM layer: the net Caffe unrolls over the T time steps of x (T, N, ...).

    The parameters are Caffe's blobs, same names, shapes and order: W_xc (4H, input), b_c
    (4H), W_xc_static (4H, static input; only with a static input), W_hc (4H, H), the rows
    of each gate in Caffe's order i, f, o, g. Step t: gates = W_xc x_t + b_c
    [+ W_xc_static x_static] + W_hc (cont_t * h_{t-1}), then caffe_lstm_unit. cont (T, N)
    is 0 where a sequence starts. h_0, c_0 are zeros unless given (expose_hidden, (1, N, H)).
    Returns the outputs h_1..h_T (T, N, H), h_T and c_T (1, N, H)."""

    def __init__(self, input_size, num_output, static_size=None):
        super().__init__()
        self.W_xc = nn.Parameter(torch.zeros(4 * num_output, input_size))
        self.b_c = nn.Parameter(torch.zeros(4 * num_output))
        if static_size is not None:
            self.W_xc_static = nn.Parameter(torch.zeros(4 * num_output, static_size))
        self.W_hc = nn.Parameter(torch.zeros(4 * num_output, num_output))

    def forward(self, x, cont, x_static=None, h0=None, c0=None):
        steps, streams, hidden = x.shape[0], x.shape[1], self.W_hc.shape[1]
        x_gates = F.linear(x.reshape(steps, streams, -1), self.W_xc, self.b_c)
        if x_static is not None:
            x_gates = x_gates + F.linear(x_static.reshape(streams, -1), self.W_xc_static)
        h = x.new_zeros(streams, hidden) if h0 is None else h0.reshape(streams, hidden)
        c = x.new_zeros(streams, hidden) if c0 is None else c0.reshape(streams, hidden)
        outputs = []
        for t in range(steps):
            gates = F.linear(cont[t].unsqueeze(-1) * h, self.W_hc) + x_gates[t]
            c, h = caffe_lstm_unit(c, gates, cont[t])
            outputs.append(h)
        return torch.stack(outputs), h.unsqueeze(0), c.unsqueeze(0)
''', requires=("caffe_lstm_unit",))

torch_helper("CaffeRNN", '''
class CaffeRNN(nn.Module):
    """Caffe's RNN layer: the net Caffe unrolls over the T time steps of x (T, N, ...).

    The parameters are Caffe's blobs, same names, shapes and order: W_xh (H, input), b_h (H),
    W_xh_static (H, static input; only with a static input), W_hh (H, H), W_ho (H, H), b_o
    (H). Step t: h_t = tanh(W_hh (cont_t * h_{t-1}) + W_xh x_t + b_h [+ W_xh_static
    x_static]), o_t = tanh(W_ho h_t + b_o). cont (T, N) is 0 where a sequence starts. h_0 is
    zeros unless given (expose_hidden, (1, N, H)). Returns o_1..o_T (T, N, H) and h_T
    (1, N, H)."""

    def __init__(self, input_size, num_output, static_size=None):
        super().__init__()
        self.W_xh = nn.Parameter(torch.zeros(num_output, input_size))
        self.b_h = nn.Parameter(torch.zeros(num_output))
        if static_size is not None:
            self.W_xh_static = nn.Parameter(torch.zeros(num_output, static_size))
        self.W_hh = nn.Parameter(torch.zeros(num_output, num_output))
        self.W_ho = nn.Parameter(torch.zeros(num_output, num_output))
        self.b_o = nn.Parameter(torch.zeros(num_output))

    def forward(self, x, cont, x_static=None, h0=None):
        steps, streams, hidden = x.shape[0], x.shape[1], self.W_hh.shape[1]
        x_h = F.linear(x.reshape(steps, streams, -1), self.W_xh, self.b_h)
        if x_static is not None:
            x_h = x_h + F.linear(x_static.reshape(streams, -1), self.W_xh_static)
        h = x.new_zeros(streams, hidden) if h0 is None else h0.reshape(streams, hidden)
        outputs = []
        for t in range(steps):
            h = torch.tanh(F.linear(cont[t].unsqueeze(-1) * h, self.W_hh) + x_h[t])
            outputs.append(torch.tanh(F.linear(h, self.W_ho, self.b_o)))
        return torch.stack(outputs), h.unsqueeze(0)
''')
