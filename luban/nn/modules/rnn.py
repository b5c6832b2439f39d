"""Recurrent layers: RNN, LSTM, GRU and their single-step cells (torch.nn names, parameter
names, gate order and formulas, so state_dicts load from PyTorch).

The input projection of a whole sequence is one matmul; the recurrence is a Python loop
over time steps, each step a small lazy graph of a matmul and the gate arithmetic.
"""
from __future__ import annotations

import math
import warnings

from ...frontend.creation import empty, zeros
from ...frontend.indexing import cat, stack
from ...tensor import Tensor
from .. import init
from ..functional.dropout import dropout as _dropout
from ..functional.linear import linear
from .module import Module, Parameter

__all__ = ["RNN", "LSTM", "GRU", "RNNCell", "LSTMCell", "GRUCell"]

_GATES = {"RNN_TANH": 1, "RNN_RELU": 1, "LSTM": 4, "GRU": 3}


# ---- one time step: (x W_ih^T + b_ih, state, W_hh, b_hh) -> new state ------------------------------
def _rnn_tanh_step(xw: Tensor, h: Tensor, w_hh: Tensor, b_hh: Tensor | None) -> Tensor:
    return (xw + linear(h, w_hh, b_hh)).tanh()


def _rnn_relu_step(xw: Tensor, h: Tensor, w_hh: Tensor, b_hh: Tensor | None) -> Tensor:
    return (xw + linear(h, w_hh, b_hh)).relu()


def _lstm_step(xw: Tensor, state: tuple, w_hh: Tensor, b_hh: Tensor | None) -> tuple:
    """Gates i, f, g, o (PyTorch's order): c' = f c + i g, h' = o tanh(c')."""
    h, c = state
    i, f, g, o = (xw + linear(h, w_hh, b_hh)).chunk(4, -1)
    c = f.sigmoid() * c + i.sigmoid() * g.tanh()
    return o.sigmoid() * c.tanh(), c


def _gru_step(xw: Tensor, h: Tensor, w_hh: Tensor, b_hh: Tensor | None) -> Tensor:
    """Gates r, z, n (PyTorch's order); the reset gate scales W_hn h + b_hn, as in PyTorch."""
    xr, xz, xn = xw.chunk(3, -1)
    hr, hz, hn = linear(h, w_hh, b_hh).chunk(3, -1)
    r, z = (xr + hr).sigmoid(), (xz + hz).sigmoid()
    n = (xn + r * hn).tanh()
    return (1 - z) * n + z * h


def _materialized(state):
    """A step's state, materialized (CONTIGUOUS). The next step uses it elementwise, so fusion
    would otherwise inline the whole chain of earlier steps into each later step's kernel."""
    return tuple(s.contiguous() for s in state) if isinstance(state, tuple) else state.contiguous()


def _hidden(state) -> Tensor:
    """The output h of a state: (h, c) for LSTM, h otherwise."""
    return state[0] if isinstance(state, tuple) else state


_STEPS = {"RNN_TANH": _rnn_tanh_step, "RNN_RELU": _rnn_relu_step, "LSTM": _lstm_step, "GRU": _gru_step}


def _reset_uniform(module: Module, hidden_size: int) -> None:
    """PyTorch's default: every weight and bias from U(-1/sqrt(hidden), 1/sqrt(hidden))."""
    bound = 1 / math.sqrt(hidden_size) if hidden_size > 0 else 0
    for p in module.parameters():
        init.uniform_(p, -bound, bound)


# ---- sequence layers ------------------------------------------------------------------------------
class RNNBase(Module):
    def __init__(self, mode: str, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False, device=None,
                 dtype=None):
        super().__init__()
        name = type(self).__name__
        if hidden_size <= 0 or num_layers <= 0:
            raise ValueError(f"{name}: hidden_size ({hidden_size}) and num_layers ({num_layers}) must be positive")
        if not 0 <= dropout <= 1:
            raise ValueError(f"{name}: dropout should be a number in range [0, 1] representing the probability of "
                             f"an element being zeroed, got {dropout}")
        if dropout > 0 and num_layers == 1:
            warnings.warn(f"{name}: dropout option adds dropout after all but last recurrent layer, so non-zero "
                          f"dropout expects num_layers greater than 1, but got dropout={dropout} and "
                          f"num_layers={num_layers}", stacklevel=3)
        self.mode, self.input_size, self.hidden_size, self.num_layers = mode, input_size, hidden_size, num_layers
        self.bias, self.batch_first, self.dropout, self.bidirectional = bias, batch_first, float(dropout), bidirectional
        gate_size = _GATES[mode] * hidden_size
        kw = {"device": device, "dtype": dtype}
        for layer in range(num_layers):
            layer_input = input_size if layer == 0 else hidden_size * self._directions
            for sfx in self._suffixes(layer):
                setattr(self, f"weight_ih{sfx}", Parameter(empty(gate_size, layer_input, **kw)))
                setattr(self, f"weight_hh{sfx}", Parameter(empty(gate_size, hidden_size, **kw)))
                if bias:
                    setattr(self, f"bias_ih{sfx}", Parameter(empty(gate_size, **kw)))
                    setattr(self, f"bias_hh{sfx}", Parameter(empty(gate_size, **kw)))
        self.reset_parameters()

    @property
    def _directions(self) -> int:
        return 2 if self.bidirectional else 1

    def _suffixes(self, layer: int) -> list:
        return [f"_l{layer}", f"_l{layer}_reverse"][:self._directions]

    def reset_parameters(self) -> None:
        _reset_uniform(self, self.hidden_size)

    def _weights(self, sfx: str) -> tuple:
        get = self._parameters.get
        return get(f"weight_ih{sfx}"), get(f"bias_ih{sfx}"), get(f"weight_hh{sfx}"), get(f"bias_hh{sfx}")

    # ---- input and state checks --------------------------------------------------------------
    def _check_input(self, input: Tensor) -> bool:
        """True when batched (3-D), False when unbatched (2-D)."""
        name = type(self).__name__
        if input.ndim not in (2, 3):
            raise ValueError(f"{name}: expected input to be 2-D (unbatched) or 3-D, got {input.ndim}-D tensor of "
                             f"shape {tuple(input.shape)}")
        if input.shape[-1] != self.input_size:
            raise RuntimeError(f"{name}: input.size(-1) must be equal to input_size. Expected {self.input_size}, got "
                               f"{input.shape[-1]} (input shape {tuple(input.shape)})")
        return input.ndim == 3

    def _initial_state(self, hx: Tensor | None, batch: int, batched: bool, like: Tensor, what: str) -> Tensor:
        """hx as (num_layers * directions, N, H); zeros when None."""
        expected = (self.num_layers * self._directions, batch, self.hidden_size)
        if hx is None:
            return zeros(*expected, dtype=like.dtype, device=like.device)
        if hx.ndim != (3 if batched else 2):
            raise RuntimeError(f"{type(self).__name__}: for {'batched 3-D' if batched else 'unbatched 2-D'} input, "
                               f"{what} should also be {3 if batched else 2}-D but got {hx.ndim}-D tensor")
        if not batched:
            hx = hx.unsqueeze(1)
        if tuple(hx.shape) != expected:
            raise RuntimeError(f"{type(self).__name__}: expected {what} size {expected}, got {tuple(hx.shape)}")
        return hx

    # ---- the recurrence ------------------------------------------------------------------------
    def _run(self, x: Tensor, states: list) -> tuple:
        """x: (T, N, input_size); states: one initial state per layer and direction.
        Returns the last layer's output (T, N, directions * H) and the final states."""
        final = []
        for layer in range(self.num_layers):
            outs = []
            for d, sfx in enumerate(self._suffixes(layer)):
                out, state = self._direction(x, states[layer * self._directions + d], sfx, reverse=d == 1)
                outs.append(out)
                final.append(state)
            x = outs[0] if len(outs) == 1 else cat(outs, -1)
            if self.dropout > 0 and self.training and layer < self.num_layers - 1:
                x = _dropout(x, self.dropout, training=True)
        return x, final

    def _direction(self, x: Tensor, state, sfx: str, reverse: bool) -> tuple:
        """One layer in one direction: (outputs (T, N, H), final state)."""
        step, (w_ih, b_ih, w_hh, b_hh) = _STEPS[self.mode], self._weights(sfx)
        xw = linear(x, w_ih, b_ih).unbind(0)  # the input projection of every step at once
        outs = [None] * len(xw)
        for t in (reversed(range(len(xw))) if reverse else range(len(xw))):
            state = _materialized(step(xw[t], state, w_hh, b_hh))
            outs[t] = _hidden(state)
        return stack(outs), state

    def _time_first(self, input: Tensor) -> tuple:
        """(batched?, input as (T, N, input_size))."""
        batched = self._check_input(input)
        x = input if batched else input.unsqueeze(1)
        x = x.transpose(0, 1) if batched and self.batch_first else x
        if x.shape[0] == 0:
            raise RuntimeError(f"{type(self).__name__}: expected sequence length to be larger than 0, got input of "
                               f"shape {tuple(input.shape)}")
        return batched, x

    def _output(self, out: Tensor, batched: bool) -> Tensor:
        if not batched:
            return out.squeeze(1)
        return out.transpose(0, 1) if self.batch_first else out

    def _final(self, states: list, batched: bool) -> Tensor:
        """Final per-layer states stacked to (num_layers * directions, N, H), or (.., H) unbatched."""
        out = stack(states)
        return out if batched else out.squeeze(1)

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if not self.bias:
            s += ", bias=False"
        if self.batch_first:
            s += ", batch_first=True"
        if self.dropout:
            s += f", dropout={self.dropout}"
        if self.bidirectional:
            s += ", bidirectional=True"
        return s


class _HiddenOnly(RNNBase):
    """RNN and GRU: one state tensor h, returned as (output, h_n)."""

    def forward(self, input: Tensor, hx: Tensor | None = None) -> tuple:
        batched, x = self._time_first(input)
        h0 = self._initial_state(hx, x.shape[1], batched, x, "hx")
        out, final = self._run(x, list(h0.unbind(0)))
        return self._output(out, batched), self._final(final, batched)


class RNN(_HiddenOnly):
    """Elman RNN: h' = act(x W_ih^T + b_ih + h W_hh^T + b_hh), act tanh or relu."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, nonlinearity: str = "tanh",
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False,
                 device=None, dtype=None):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"RNN: unknown nonlinearity {nonlinearity!r}; select from 'tanh' or 'relu'")
        super().__init__(f"RNN_{nonlinearity.upper()}", input_size, hidden_size, num_layers, bias, batch_first,
                         dropout, bidirectional, device, dtype)
        self.nonlinearity = nonlinearity


class GRU(_HiddenOnly):
    """Gated recurrent unit with PyTorch's formula (gates r, z, n):
    n = tanh(W_in x + b_in + r (W_hn h + b_hn)), h' = (1 - z) n + z h."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False, device=None,
                 dtype=None):
        super().__init__("GRU", input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
                         device, dtype)


class LSTM(RNNBase):
    """Long short-term memory (gates i, f, g, o); returns (output, (h_n, c_n))."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False, device=None,
                 dtype=None):
        super().__init__("LSTM", input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
                         device, dtype)

    def forward(self, input: Tensor, hx: tuple | None = None) -> tuple:
        batched, x = self._time_first(input)
        if hx is not None and not (isinstance(hx, (tuple, list)) and len(hx) == 2):
            raise TypeError("LSTM: hx must be a tuple (h_0, c_0) of Tensors")
        h0, c0 = (self._initial_state(None if hx is None else hx[i], x.shape[1], batched, x, what)
                  for i, what in enumerate(("h_0", "c_0")))
        out, final = self._run(x, list(zip(h0.unbind(0), c0.unbind(0))))
        return self._output(out, batched), (self._final([h for h, _ in final], batched),
                                            self._final([c for _, c in final], batched))


# ---- single-step cells ----------------------------------------------------------------------------
class RNNCellBase(Module):
    def __init__(self, mode: str, input_size: int, hidden_size: int, bias: bool, device=None, dtype=None):
        super().__init__()
        self.mode, self.input_size, self.hidden_size, self.bias = mode, input_size, hidden_size, bias
        gate_size = _GATES[mode] * hidden_size
        kw = {"device": device, "dtype": dtype}
        self.weight_ih = Parameter(empty(gate_size, input_size, **kw))
        self.weight_hh = Parameter(empty(gate_size, hidden_size, **kw))
        self.bias_ih = Parameter(empty(gate_size, **kw)) if bias else None
        self.bias_hh = Parameter(empty(gate_size, **kw)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        _reset_uniform(self, self.hidden_size)

    def _check(self, input: Tensor, hx: Tensor | None, what: str) -> tuple:
        """(batched?, input as (N, input_size), hx as (N, H) or zeros)."""
        name = type(self).__name__
        if input.ndim not in (1, 2) or input.shape[-1] != self.input_size:
            raise RuntimeError(f"{name}: expected input of shape (N, {self.input_size}) or ({self.input_size},), got "
                               f"{tuple(input.shape)}")
        batched = input.ndim == 2
        x = input if batched else input.unsqueeze(0)
        if hx is None:
            return batched, x, zeros(x.shape[0], self.hidden_size, dtype=x.dtype, device=x.device)
        expected = (x.shape[0], self.hidden_size) if batched else (self.hidden_size,)
        if tuple(hx.shape) != expected:
            raise RuntimeError(f"{name}: expected {what} of shape {expected} for input of shape "
                               f"{tuple(input.shape)}, got {tuple(hx.shape)}")
        return batched, x, (hx if batched else hx.unsqueeze(0))

    def _step(self, x: Tensor, state):
        return _STEPS[self.mode](linear(x, self.weight_ih, self.bias_ih), state, self.weight_hh, self.bias_hh)

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}" + ("" if self.bias else ", bias=False")


class _HiddenOnlyCell(RNNCellBase):
    def forward(self, input: Tensor, hx: Tensor | None = None) -> Tensor:
        batched, x, h = self._check(input, hx, "hx")
        h = self._step(x, h)
        return h if batched else h.squeeze(0)


class RNNCell(_HiddenOnlyCell):
    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, nonlinearity: str = "tanh",
                 device=None, dtype=None):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"RNNCell: unknown nonlinearity {nonlinearity!r}; select from 'tanh' or 'relu'")
        super().__init__(f"RNN_{nonlinearity.upper()}", input_size, hidden_size, bias, device, dtype)
        self.nonlinearity = nonlinearity


class GRUCell(_HiddenOnlyCell):
    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, device=None, dtype=None):
        super().__init__("GRU", input_size, hidden_size, bias, device, dtype)


class LSTMCell(RNNCellBase):
    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, device=None, dtype=None):
        super().__init__("LSTM", input_size, hidden_size, bias, device, dtype)

    def forward(self, input: Tensor, hx: tuple | None = None) -> tuple:
        """Returns (h', c')."""
        if hx is not None and not (isinstance(hx, (tuple, list)) and len(hx) == 2):
            raise TypeError("LSTMCell: hx must be a tuple (h_0, c_0) of Tensors")
        batched, x, h = self._check(input, None if hx is None else hx[0], "h_0")
        c = self._check(input, None if hx is None else hx[1], "c_0")[2]
        h, c = self._step(x, (h, c))
        return (h, c) if batched else (h.squeeze(0), c.squeeze(0))
