"""Write a tiny random-weights llama model (GGUF) that llama.cpp loads in milliseconds.

Nothing is downloaded: weights come from a seeded numpy generator. The vocabulary is
SentencePiece-style with byte fallback (any UTF-8 tokenizes) plus a few whole words,
and column 0 of the output matrix biases sampling toward those words, so the model
"speaks" readable nonsense. `eos_bias` sets how soon it stops (high: within a few tokens).
"""

from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np

WORDS = ("the council answer model proxy fast slow local cloud vote merge stream token light dark "
         "blue green red yes no maybe always never today small big river cloud tree cat dog").split()

TEMPLATE = ("{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
            "{% if add_generation_prompt %}assistant:{% endif %}")


def _vocab() -> tuple[list[str], list[float], list[int], int, int]:
    T = gguf.TokenType
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
    types = [T.UNKNOWN, T.CONTROL, T.CONTROL] + [T.BYTE] * 256
    n_special = len(tokens)
    chars = ["\u2581"] + [chr(c) for c in range(33, 127)]
    tokens += chars
    types += [T.NORMAL] * len(chars)
    n_chars = len(tokens)
    for w in dict.fromkeys(WORDS):
        tokens.append("\u2581" + w)
        types.append(T.NORMAL)
    scores = [0.0] * n_special + [-float(i) for i in range(len(tokens) - n_special)]
    return tokens, scores, [int(t) for t in types], n_special, n_chars


def write(path: Path, *, seed: int = 0, eos_bias: float = 4.0, n_embd: int = 64, n_layer: int = 2,
          n_head: int = 4, n_kv: int = 2, n_ff: int = 128, ctx: int = 1024) -> Path:
    rng = np.random.default_rng(seed)
    hd = n_embd // n_head
    tokens, scores, types, n_special, n_chars = _vocab()
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_name(f"tiny-{seed}")
    w.add_context_length(ctx)
    w.add_embedding_length(n_embd)
    w.add_block_count(n_layer)
    w.add_feed_forward_length(n_ff)
    w.add_head_count(n_head)
    w.add_head_count_kv(n_kv)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_dimension_count(hd)
    w.add_rope_freq_base(10000.0)
    w.add_vocab_size(len(tokens))
    w.add_file_type(gguf.LlamaFileType.ALL_F32)
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)
    w.add_add_bos_token(True)
    w.add_add_eos_token(False)
    w.add_chat_template(TEMPLATE)

    def mat(rows: int, cols: int, scale: float) -> np.ndarray:
        return (rng.standard_normal((rows, cols)) * scale).astype(np.float32)

    # Residual dimension 0 carries a constant that no layer writes to, so output column 0
    # acts as a per-token bias: that is what keeps sampling on whole words.
    emb = mat(len(tokens), n_embd, 1.0)
    emb[:, 0] = 8.0
    w.add_tensor("token_embd.weight", emb)
    for i in range(n_layer):
        p = f"blk.{i}."
        w.add_tensor(p + "attn_norm.weight", np.ones(n_embd, dtype=np.float32))
        w.add_tensor(p + "attn_q.weight", mat(n_head * hd, n_embd, n_embd**-0.5))
        w.add_tensor(p + "attn_k.weight", mat(n_kv * hd, n_embd, n_embd**-0.5))
        w.add_tensor(p + "attn_v.weight", mat(n_kv * hd, n_embd, n_embd**-0.5))
        wo = mat(n_embd, n_head * hd, 0.5 * n_embd**-0.5)
        wo[0, :] = 0.0
        w.add_tensor(p + "attn_output.weight", wo)
        w.add_tensor(p + "ffn_norm.weight", np.ones(n_embd, dtype=np.float32))
        w.add_tensor(p + "ffn_gate.weight", mat(n_ff, n_embd, n_embd**-0.5))
        w.add_tensor(p + "ffn_up.weight", mat(n_ff, n_embd, n_embd**-0.5))
        wd = mat(n_embd, n_ff, 0.5 * n_ff**-0.5)
        wd[0, :] = 0.0
        w.add_tensor(p + "ffn_down.weight", wd)
    w.add_tensor("output_norm.weight", np.ones(n_embd, dtype=np.float32))
    out = mat(len(tokens), n_embd, 0.4)
    x0 = 5.0  # dimension 0 after the final RMSNorm
    out[:n_special, :] = 0.0
    out[:n_special, 0] = -15.0 / x0
    out[2, 0] = eos_bias / x0
    out[n_special:n_chars, 0] = 0.0
    out[n_chars:, 0] = 2.0 / x0
    w.add_tensor("output.weight", out)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path
