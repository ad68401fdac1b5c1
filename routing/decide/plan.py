"""`shenron plan`: will the models fit the GPUs? The seed's quantization table as a command. Pure.

A model's memory is estimated as weights + KV cache + runtime overhead:
- weights: parameters x bits per weight / 8 (llama.cpp's effective bits for each GGUF type);
- KV cache: about 0.07 GB per billion parameters per 4096 tokens of context (a 7-8B model
  with grouped-query attention at 4k context needs about 0.5 GB), scaled by `context-tokens`;
- overhead: 0.5 GB per model (CUDA context, compute buffers).
These are estimates for planning, not measurements; real use varies with the architecture.
"""

from __future__ import annotations

from dataclasses import dataclass

from routing.config import Config

BITS = {
    "fp32": 32.0, "f32": 32.0, "fp16": 16.0, "f16": 16.0, "bf16": 16.0,
    "q8_0": 8.5, "q6_k": 6.56, "q5_k_m": 5.69, "q5_0": 5.5, "q4_k_m": 4.85, "q4_0": 4.55,
    "q3_k_m": 3.91, "q2_k": 3.35,
}
LADDER = ["fp16", "q8_0", "q6_k", "q5_k_m", "q4_k_m", "q3_k_m", "q2_k"]
"""What `plan` tries, from best to smallest, when a GPU is over budget."""
KV_GB_PER_B_PER_4K = 0.07
OVERHEAD_GB = 0.5
DEFAULT_QUANT = "q4_k_m"
"""Ollama's default for most models; assumed when `quant` is unset."""


def weights_gb(params_b: float, quant: str) -> float:
    return params_b * BITS[quant] / 8


def model_gb(params_b: float, quant: str, context_tokens: int = 4096) -> float:
    return weights_gb(params_b, quant) + KV_GB_PER_B_PER_4K * params_b * context_tokens / 4096 + OVERHEAD_GB


@dataclass
class Row:
    backend: str
    model: str
    params_b: float | None
    quant: str
    gb: float | None
    """None: `params-b` is not set, so it cannot be estimated."""
    alternatives: dict[str, float]


@dataclass
class Device:
    name: str
    budget_gb: float | None
    kind: str
    rows: list[Row]
    max_concurrent: int | None = None

    @property
    def total_gb(self) -> float:
        return sum(r.gb or 0.0 for r in self.rows)

    @property
    def fits(self) -> bool | None:
        return None if self.budget_gb is None else self.total_gb <= self.budget_gb

    def fitting_quant(self) -> str | None:
        """The best single quantization for every model on this device that fits the budget."""
        if self.budget_gb is None:
            return None
        for q in LADDER:
            if sum(r.alternatives.get(q, r.gb or 0.0) for r in self.rows) <= self.budget_gb:
                return q
        return None


def plan(cfg: Config, ram_gb: float | None) -> list[Device]:
    """One device per GPU pool, and `cpu` (against host RAM) for backends on none. A model is
    counted once per device even when several backends serve it."""
    devices: dict[str, Device] = {n: Device(n, g.vram_gb, "gpu", [], g.max_concurrent) for n, g in cfg.gpus.items()}
    seen: set[tuple[str, str, str]] = set()
    for name, b in cfg.backends.items():
        if b.is_cloud:
            continue
        where = b.gpu or "cpu"
        if where not in devices:
            devices[where] = Device("cpu (RAM)", ram_gb, "cpu", [])
        quant = (b.quant or DEFAULT_QUANT).lower()
        key = (where, b.url, b.model)
        if key in seen:
            continue
        seen.add(key)
        gb = model_gb(b.params_b, quant, b.context_tokens or 4096) if b.params_b and quant in BITS else None
        alts = {q: model_gb(b.params_b, q, b.context_tokens or 4096) for q in LADDER} if b.params_b else {}
        devices[where].rows.append(Row(name, b.model, b.params_b, quant, gb, alts))
    return list(devices.values())


def render(devices: list[Device]) -> str:
    out: list[str] = []
    for d in devices:
        head = f"{d.name}: {d.budget_gb:g} GB" if d.budget_gb is not None else f"{d.name}: budget unknown"
        if d.max_concurrent:
            head += f", max-concurrent {d.max_concurrent}"
        out.append(head)
        out.append(f"  {'backend':<16} {'model':<28} {'params':>7} {'quant':<7} {'est GB':>7}   "
                   + "  ".join(f"{q:>6}" for q in ("fp16", "q8_0", "q4_k_m")))
        for r in d.rows:
            est = f"{r.gb:7.1f}" if r.gb is not None else "      ?"
            params = f"{r.params_b:g}B" if r.params_b else "?"
            alts = "  ".join(f"{r.alternatives[q]:6.1f}" if q in r.alternatives else "     ?"
                             for q in ("fp16", "q8_0", "q4_k_m"))
            out.append(f"  {r.backend:<16} {r.model[:28]:<28} {params:>7} {r.quant:<7} {est}   {alts}")
        unknown = [r.backend for r in d.rows if r.gb is None]
        if d.budget_gb is None:
            verdict = f"total {d.total_gb:.1f} GB (no budget known)"
        elif d.fits:
            verdict = f"total {d.total_gb:.1f} GB of {d.budget_gb:g} GB: fits ({d.budget_gb - d.total_gb:.1f} GB free)"
        else:
            q = d.fitting_quant()
            verdict = (f"total {d.total_gb:.1f} GB of {d.budget_gb:g} GB: does NOT fit "
                       f"(over by {d.total_gb - d.budget_gb:.1f} GB); "
                       + (f"fits if every model is {q} ({sum(r.alternatives.get(q, 0) for r in d.rows):.1f} GB)"
                          if q else "does not fit even at q2_k: move models to another GPU"))
        out.append("  " + verdict)
        if unknown:
            out.append(f"  not estimated (set params-b): {', '.join(unknown)}")
        out.append("")
    out.append("Estimates: weights (params x bits/8) + KV cache (~0.07 GB per B params per 4k context) + 0.5 GB "
               "overhead per model.")
    return "\n".join(out)
