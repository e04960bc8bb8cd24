"""Sampling from SaShiMi, apart from the model's definition: the generation loop (on
the compiled step engine when the model qualifies, else with the model's ``step``),
prefix priming, the progress bar, and the draw of each token (:func:`sample_logits`).
``SaShiMi.generate`` checks its arguments and calls :func:`sample`.
"""

from __future__ import annotations

from typing import Optional

import torch

from .sashimi_engine import Engine, supported

GENERATE_CHUNK = 256  # engine steps per call: the progress bar's granularity


@torch.no_grad()
def sample(
    model,
    tokens: torch.Tensor,
    length: int,
    temperature: float = 1.0,
    top_p: float = 1.0,
    *,
    generator: Optional[torch.Generator] = None,
    progress: bool = False,
    fast: bool = True,
) -> torch.Tensor:
    """``length`` new tokens per stream after `tokens` (n, P) int64, P >= 1, on the
    model's device: int64 (n, length).

    All but the last of `tokens` are read with ``model.prime`` in one pass; the last is
    the first step's input. One uniform per token is drawn up front (with `generator`),
    each token taken by inverse CDF (:func:`sample_logits`). fast: on the compiled step
    engine when the model qualifies (:func:`ssmkit.models.sashimi_engine.supported`).
    The model runs in eval mode and gets its mode back.
    """
    n, device = tokens.shape[0], tokens.device
    was_training = model.training
    model.eval()
    try:
        uniforms = torch.rand(length, n, generator=generator, dtype=torch.float64)
        if tokens.shape[1] > 1:
            _, state = model.prime(tokens[:, :-1])
        else:
            state = model.default_state(n, device)
        token = tokens[:, -1].contiguous()
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=length, desc="generating", unit="sample", mininterval=1.0, dynamic_ncols=True)
        out = torch.empty(n, length, dtype=torch.int64, device=device)
        if fast and supported(model):
            engine = Engine(model, state)
            token = token.clone()
            for i in range(0, length, GENERATE_CHUNK):
                c = min(GENERATE_CHUNK, length - i)
                samples, _ = engine.run(c, token=token, uniforms=uniforms[i : i + c], temperature=temperature, top_p=top_p)
                out[:, i : i + c] = samples.T
                if bar is not None:
                    bar.update(c)
        else:
            for i in range(length):
                logits, state = model.step(token, state)
                token = sample_logits(logits, temperature, top_p, uniforms=uniforms[i].to(device))
                out[:, i] = token
                if bar is not None:
                    bar.update(1)
        if bar is not None:
            bar.close()
        return out
    finally:
        model.train(was_training)


def sample_logits(
    logits: torch.Tensor, temperature: float = 1.0, top_p: float = 1.0, generator=None, uniforms: Optional[torch.Tensor] = None
) -> torch.Tensor:
    """One draw per row of logits (batch, classes) from softmax(logits / temperature)
    restricted to the top_p nucleus (the most likely tokens, most likely first, while
    the mass before them is below top_p: the most likely always stays), by inverse CDF
    in float64 at ``uniforms`` (batch,) in [0, 1) (drawn with ``generator`` when None).
    The compiled engine draws the same way (``_C.sample_tokens``)."""
    if uniforms is None:
        uniforms = torch.rand(logits.shape[0], generator=generator, dtype=torch.float64, device=logits.device)
    probs = torch.softmax(logits.double() / temperature, -1)
    if top_p < 1:
        sorted_probs, order = probs.sort(stable=True, dim=-1, descending=True)
        before = sorted_probs.cumsum(-1) - sorted_probs  # mass of the more likely tokens
        probs = probs.scatter(-1, order, sorted_probs.masked_fill(before >= top_p, 0.0))
    cdf = probs.cumsum(-1)
    target = uniforms.to(cdf) * cdf[:, -1]
    token = torch.searchsorted(cdf, target.unsqueeze(-1), right=True).squeeze(-1)
    last_kept = probs.shape[-1] - 1 - (probs > 0).flip(-1).int().argmax(-1)  # target rounded up to the whole mass
    return torch.minimum(token, last_kept)
