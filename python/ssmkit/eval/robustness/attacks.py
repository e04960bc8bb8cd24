"""Adversarial attacks on the raw input: FGSM and PGD under L-inf and L2 budgets.

Gradients come from autograd through the model (for ssmkit models, through the kernels'
backward passes). The budget is per example: max |delta| <= eps (L-inf) or ||delta||_2 <=
eps over all of an example's samples and channels (L2), measured on the float result
actually returned, so rounding of x + delta never leaves the ball.
"""

from __future__ import annotations

import torch

from .transforms import RowGenerators, _check_batch, valid_mask

__all__ = ["Attack"]

_METHODS = ("fgsm", "pgd")
_NORMS = ("linf", "l2")


class Attack:
    """An adversarial attack that maximises the cross-entropy of the true label.

    - ``method="fgsm"``: one step of size eps (sign of the gradient for L-inf, the
      normalised gradient for L2).
    - ``method="pgd"``: ``steps`` projected steps of ``step_size`` (default 2.5 eps /
      steps, after Madry et al.), from a random point of the ball when ``random_start``
      (seeded per example); it returns, per example, the iterate with the highest loss.

    ``bounds=(lo, hi)`` clamps the attacked input (e.g. (-1, 1) for audio); it should
    contain the clean inputs. Padding (beyond ``lengths``) is never perturbed. Run the
    model in eval mode, so that dropout does not make the gradients random.
    """

    category = "attack"

    def __init__(
        self,
        method: str = "pgd",
        eps: float = 0.01,
        *,
        norm: str = "linf",
        steps: int = 10,
        step_size: float | None = None,
        random_start: bool = True,
        seed: int = 0,
        bounds: tuple[float, float] | None = None,
        name: str | None = None,
    ):
        if method not in _METHODS:
            raise ValueError(f"method: expected one of {', '.join(_METHODS)}, got {method!r}")
        if norm not in _NORMS:
            raise ValueError(f"norm: expected one of {', '.join(_NORMS)}, got {norm!r}")
        if not float(eps) >= 0:
            raise ValueError(f"eps: expected a budget >= 0, got {eps}")
        if not isinstance(steps, int) or steps < 1:
            raise ValueError(f"steps: expected a positive whole number, got {steps!r}")
        if bounds is not None and not (len(bounds) == 2 and bounds[0] < bounds[1]):
            raise ValueError(f"bounds: expected (lo, hi) with lo < hi, got {bounds!r}")
        self.method, self.eps, self.norm = method, float(eps), norm
        self.steps = 1 if method == "fgsm" else steps
        self.step_size = self.eps if method == "fgsm" else float(step_size if step_size is not None else 2.5 * self.eps / steps)
        self.random_start = random_start and method == "pgd"
        self.seed, self.bounds = int(seed), bounds
        self.name = name or f"{method.upper()} {'L-inf' if norm == 'linf' else 'L2'} eps={self.eps:g}"

    def __repr__(self) -> str:
        return f"Attack({self.name!r}, steps={self.steps}, step_size={self.step_size:g}, seed={self.seed})"

    def slices(self, context) -> list:
        from .slices import Slice

        return [Slice(self.name, "attack", lineage=(context.name, f"attack {self!r}"), attack=self)]

    def perturb(self, model, x: torch.Tensor, labels: torch.Tensor, lengths=None, index=None) -> torch.Tensor:
        """The attacked batch: same shape and dtype as x, within the budget of x."""
        lengths, index = _check_batch(x, lengths, index)
        x = x.detach()
        labels = torch.as_tensor(labels, device=x.device)
        if self.eps == 0:
            return x.clone()
        mask = valid_mask(x, lengths).to(x.dtype)
        delta = self._start(x, index) * mask
        best = x.clone()
        best_loss = torch.full((len(x),), -torch.inf, dtype=torch.float64, device=x.device)
        for step in range(self.steps + 1):
            x_adv = self._fit(x, x + delta)
            with torch.enable_grad():
                x_adv.requires_grad_(True)
                loss = torch.nn.functional.cross_entropy(model(x_adv).double(), labels, reduction="none")
                grad = torch.autograd.grad(loss.sum(), x_adv)[0] if step < self.steps else None
            x_adv = x_adv.detach()
            if step > 0:  # the start point is not an attack result
                better = loss.detach() > best_loss
                best[better], best_loss[better] = x_adv[better], loss.detach()[better]
            if grad is None:
                break
            delta = self._project(x_adv - x + self.step_size * self._direction(grad * mask))
        return best

    def _start(self, x, index):
        if not self.random_start:
            return torch.zeros_like(x)
        rng = RowGenerators(self.seed, index)
        if self.norm == "linf":
            draws = [torch.rand(x.shape[1:], generator=rng[row], dtype=torch.float64) * 2 - 1 for row in range(len(x))]
            return (torch.stack(draws) * self.eps).to(x)
        directions = [torch.randn(x.shape[1:], generator=rng[row], dtype=torch.float64) for row in range(len(x))]
        radii = [torch.rand((), generator=rng[row], dtype=torch.float64) for row in range(len(x))]
        direction = torch.stack(directions)
        direction = direction / _norms(direction).clamp_min(1e-300)
        return (direction * torch.stack(radii).reshape(_row_shape(x)) * self.eps).to(x)

    def _direction(self, grad):
        if self.norm == "linf":
            return grad.sign()
        return grad / _norms(grad).clamp_min(1e-30)

    def _project(self, delta):
        if self.norm == "linf":
            return delta.clamp(-self.eps, self.eps)
        return delta * (self.eps / _norms(delta).clamp_min(1e-30)).clamp(max=1)

    def _fit(self, x, x_adv):
        """x_adv clamped to the bounds and pulled into the ball: the float result whose exact
        (float64) distance from x is within eps and is the largest such. For L-inf each
        coordinate goes to the stored value nearest x + clamp(d, -eps, eps), then steps one
        ulp toward x while rounding put it outside (never more than a few ulps); for L2
        each row outside is scaled toward x, a little more each round."""
        if self.bounds is not None:
            x_adv = x_adv.clamp(*self.bounds)
        d = x_adv.double() - x.double()
        if self.norm == "linf":
            x_adv = (x.double() + d.clamp(-self.eps, self.eps)).to(x.dtype)
            while True:  # ends: each step moves toward x, and x itself is inside
                over = (x_adv.double() - x.double()).abs() > self.eps
                if not over.any():
                    return x_adv
                x_adv = torch.where(over, torch.nextafter(x_adv, x), x_adv)
        scale = (self.eps / _norms(d).clamp_min(1e-300)).clamp(max=1)
        for k in range(60):  # 1 - 1e-6 * 2**k reaches 0 by k = 20: x itself
            over = (_norms(x_adv.double() - x.double()) > self.eps).expand_as(d)
            if not over.any():
                break
            x_adv = torch.where(over, (x.double() + d * scale * max(0.0, 1 - 1e-6 * 2**k)).to(x.dtype), x_adv)
        return x_adv


def _row_shape(x):
    return (len(x),) + (1,) * (x.dim() - 1)


def _norms(t):
    """L2 norm of each row over all its other dimensions, shaped to broadcast against t."""
    return t.flatten(1).norm(dim=1).reshape(_row_shape(t))
