"""ONNX graphs built programmatically from numpy weights (``onnx.helper``), no exporter, no torch.

A network is described by a short list of layer specs (plain tuples, see :class:`Builder`),
which :func:`build_model` turns into an ONNX ``ModelProto`` with dynamic height and width.
Convolutions keep the padding rules of :mod:`slimfast.nn.layers`: ``conv`` pads ``(k - 1) / 2``
on both sides, ``tconv`` uses ``padding`` / ``output_padding`` so that its output is exactly
``stride`` times its input.

A transposed convolution with a square stride can instead be emitted as a *sub-pixel*
convolution (``tconv="subpixel"``): one ordinary convolution with ``Cout * s * s`` outputs
whose kernel holds each output phase's taps, then ``DepthToSpace(s)``. It computes the same
sums (the zero taps aside) as a plain GEMM instead of GEMM + col2im; it pays off only where the
phases are dense (kernel close to 2 x stride), so each architecture picks its form
(``archs.Arch.tconv_for``: sub-pixel for FasiNet-L's 7x7 kernels, not for FasiNet-H's 5x5, and
for SlimCAE at widths 96 and up).
"""
from __future__ import annotations

import numpy as np

OPSET = 17
IR_VERSION = 8  # understood by every onnxruntime that supports opset 17

# Layer specs (tuples):
#   ("conv", w [Cout, Cin, kh, kw], b [Cout] | None, (sh, sw), (top, left, bottom, right))
#   ("tconv", w [Cin, Cout, kh, kw], b | None, (sh, sw), (ph, pw), (oph, opw))
#   ("gdn", beta [C], gamma [C, C], inverse: bool)
#   ("relu",)  ("abs",)
#   ("iqr", conv1, conv2, conv3)   (three "conv" specs: y - 0.5 * tanh(c3(relu(c2(relu(c1(y)))))))


def conv_spec(w: np.ndarray, b: np.ndarray | None, stride=(1, 1), pads: tuple[int, int, int, int] | None = None):
    """A ``conv`` spec with :func:`slimfast.nn.layers.conv`'s symmetric padding unless ``pads`` is given."""
    kh, kw = w.shape[2:]
    if pads is None:
        pads = ((kh - 1) // 2, (kw - 1) // 2, (kh - 1) // 2, (kw - 1) // 2)
    return ("conv", w, b, tuple(stride), tuple(pads))


def subpixel_weights(w: np.ndarray, b: np.ndarray | None, stride: int, padding: tuple[int, int]):
    """Sub-pixel form of a transposed convolution with square stride ``s``.

    Returns ``(w_conv [Cout*s*s, Cin, Jh, Jw], b_conv, pads)`` such that
    ``DepthToSpace(conv(x, w_conv, b_conv, pads), s, mode="CRD")`` equals
    ``conv_transpose(x, w, b, s, padding, output_padding)`` whenever its output is ``s`` times
    its input. Output phase ``r`` of input position ``q`` is ``sum_j x[q + j] w[r + p - s j]``.
    """
    cin, cout, kh, kw = w.shape
    s = int(stride)

    def taps(k: int, p: int):
        js = [j for r in range(s) for j in range(-k, k + 1) if 0 <= r + p - s * j < k]
        return min(min(js), 0), max(max(js), 0)

    (jh0, jh1), (jw0, jw1) = taps(kh, padding[0]), taps(kw, padding[1])
    wc = np.zeros((cout, s, s, cin, jh1 - jh0 + 1, jw1 - jw0 + 1), dtype=np.float32)
    for rh in range(s):
        for jh in range(jh0, jh1 + 1):
            ih = rh + padding[0] - s * jh
            if not 0 <= ih < kh:
                continue
            for rw in range(s):
                for jw in range(jw0, jw1 + 1):
                    iw = rw + padding[1] - s * jw
                    if 0 <= iw < kw:
                        wc[:, rh, rw, :, jh - jh0, jw - jw0] = w[:, :, ih, iw].T
    wc = wc.reshape(cout * s * s, cin, jh1 - jh0 + 1, jw1 - jw0 + 1)
    bc = None if b is None else np.repeat(np.asarray(b, dtype=np.float32), s * s)
    return wc, bc, (-jh0, -jw0, jh1, jw1)


class Builder:
    """Accumulates ONNX nodes and initializers; each method returns its output's name."""

    def __init__(self, tconv: str = "convtranspose"):
        if tconv not in ("convtranspose", "subpixel"):
            raise ValueError("tconv must be 'convtranspose' or 'subpixel'")
        self.tconv_mode = tconv
        self.nodes = []
        self.inits = []
        self._n = 0

    def _name(self, base: str) -> str:
        self._n += 1
        return f"{base}_{self._n}"

    def const(self, arr: np.ndarray, base: str = "c") -> str:
        from onnx import numpy_helper

        name = self._name(base)
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(arr), name))
        return name

    def node(self, op: str, inputs: list[str], **attrs) -> str:
        from onnx import helper

        out = self._name(op.lower())
        self.nodes.append(helper.make_node(op, inputs, [out], name=out, **attrs))
        return out

    def conv(self, x: str, w, b, stride, pads) -> str:
        ins = [x, self.const(np.asarray(w, np.float32), "w")]
        if b is not None:
            ins.append(self.const(np.asarray(b, np.float32), "b"))
        return self.node("Conv", ins, kernel_shape=list(w.shape[2:]), strides=list(stride), pads=list(pads))

    def tconv(self, x: str, w, b, stride, padding, output_padding) -> str:
        sh, sw = stride
        if self.tconv_mode == "subpixel" and sh == sw and sh > 1:
            y = self.tconv_phases(x, w, b, stride, padding, output_padding)
            return self.node("DepthToSpace", [y], blocksize=int(sh), mode="CRD")
        ins = [x, self.const(np.asarray(w, np.float32), "w")]
        if b is not None:
            ins.append(self.const(np.asarray(b, np.float32), "b"))
        ph, pw = padding
        return self.node("ConvTranspose", ins, kernel_shape=list(w.shape[2:]), strides=[sh, sw],
                         pads=[ph, pw, ph, pw], output_padding=list(output_padding))

    def tconv_phases(self, x: str, w, b, stride, padding, output_padding) -> str:
        """The sub-pixel form of a square-stride ``s`` transposed convolution *without* its
        ``DepthToSpace``: ``[1, Cout * s * s, H, W]`` in CRD order, for a caller that rearranges
        the phases itself (the decoder's last layer: one pass straight to interleaved bytes)."""
        sh, sw = stride
        if sh != sw or sh < 2:
            raise ValueError("phases need a square stride of at least 2")
        wc, bc, pads = subpixel_weights(np.asarray(w, np.float32), b, sh, padding)
        return self.conv(x, wc, bc, (1, 1), pads)

    def gdn(self, x: str, beta, gamma, inverse: bool) -> str:
        sq = self.node("Mul", [x, x])
        norm = self.conv(sq, np.asarray(gamma, np.float32)[:, :, None, None], beta, (1, 1), (0, 0, 0, 0))
        root = self.node("Sqrt", [norm])
        return self.node("Mul" if inverse else "Div", [x, root])

    def layer(self, x: str, spec) -> str:
        kind = spec[0]
        if kind == "conv":
            return self.conv(x, *spec[1:])
        if kind == "tconv":
            return self.tconv(x, *spec[1:])
        if kind == "gdn":
            return self.gdn(x, *spec[1:])
        if kind == "relu":
            return self.node("Relu", [x])
        if kind == "abs":
            return self.node("Abs", [x])
        if kind == "iqr":
            h = self.node("Relu", [self.layer(x, spec[1])])
            h = self.node("Relu", [self.layer(h, spec[2])])
            r = self.node("Tanh", [self.layer(h, spec[3])])
            r = self.node("Mul", [r, self.const(np.array(0.5, np.float32), "half")])
            return self.node("Sub", [x, r])
        raise ValueError(f"unknown layer spec {kind!r}")

    def sequence(self, x: str, specs) -> str:
        for spec in specs:
            x = self.layer(x, spec)
        return x


def build_model(inputs: dict[str, int], outputs: dict[str, int], body, tconv: str = "convtranspose"):
    """An ONNX model with float32 ``[1, C, H, W]`` inputs/outputs (``name -> C``, H and W dynamic).

    ``body(builder, {input name: tensor name})`` adds the nodes and returns
    ``{output name: tensor name}``.
    """
    import onnx
    from onnx import TensorProto, helper

    b = Builder(tconv)
    outs = body(b, {name: name for name in inputs})
    for name in outputs:  # give each output its public name
        b.nodes.append(helper.make_node("Identity", [outs[name]], [name], name=f"out_{name}"))

    def vi(name, c, tag):
        return helper.make_tensor_value_info(name, TensorProto.FLOAT, [1, c, f"{tag}_h", f"{tag}_w"])

    graph = helper.make_graph(b.nodes, "slimfast", [vi(n, c, n) for n, c in inputs.items()],
                              [vi(n, c, n) for n, c in outputs.items()], initializer=b.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="slimfast")
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    return model
