"""Learned mixture-of-diagonal-Gaussians prior p(z) = sum_k pi_k N(z; mu_k, diag(s_k^2))."""
from __future__ import annotations

import math

import torch
from torch import nn

LOG_2PI = math.log(2.0 * math.pi)


class MixturePrior(nn.Module):
    """K diagonal Gaussians with learnable mixing logits, means and log-scales (all in float32)."""

    def __init__(self, latent_dim: int, n_components: int, init_spread: float = 0.5, init_scale: float = 0.5) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.n_components = n_components
        self.init_scale = init_scale
        self.logits = nn.Parameter(torch.zeros(n_components))
        self.means = nn.Parameter(torch.randn(n_components, latent_dim) * init_spread)
        self.log_scales = nn.Parameter(torch.full((n_components, latent_dim), math.log(init_scale)))

    def log_weights(self) -> torch.Tensor:
        """log pi_k, shape [K]."""
        return torch.log_softmax(self.logits.float(), dim=-1)

    def component_log_prob_per_dim(self, z: torch.Tensor) -> torch.Tensor:
        """log N(z_d; mu_kd, s_kd) for every component and dimension: [..., D] -> [..., K, D]."""
        z = z.float().unsqueeze(-2)
        log_s = self.log_scales.float()
        return -0.5 * (((z - self.means.float()) * torch.exp(-log_s)) ** 2 + LOG_2PI) - log_s

    def joint_log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """log pi_k + log N(z; mu_k, s_k) per component: [..., D] -> [..., K]."""
        return self.component_log_prob_per_dim(z).sum(-1) + self.log_weights()

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """log p(z) in nats: [..., D] -> [...]."""
        return torch.logsumexp(self.joint_log_prob(z), dim=-1)

    def marginal_log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """log p_d(z_d) of each dimension's 1-D marginal mixture: [..., D] -> [..., D]."""
        per_dim = self.component_log_prob_per_dim(z) + self.log_weights().unsqueeze(-1)
        return torch.logsumexp(per_dim, dim=-2)

    def responsibilities(self, z: torch.Tensor) -> torch.Tensor:
        """p(k | z): [..., D] -> [..., K]."""
        return torch.softmax(self.joint_log_prob(z), dim=-1)

    @torch.no_grad()
    def sample(
        self, n: int, component: int | None = None, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw n latents (z[n, D], component k[n]); ``component`` fixes k for every draw."""
        device = self.means.device
        if component is None:
            probs = torch.softmax(self.logits.float(), dim=-1)
            k = torch.multinomial(probs.cpu(), n, replacement=True, generator=generator).to(device)
        else:
            if not 0 <= component < self.n_components:
                raise ValueError(f"component {component} out of range 0..{self.n_components - 1}")
            k = torch.full((n,), component, dtype=torch.long, device=device)
        eps = torch.randn(n, self.latent_dim, generator=generator).to(device)
        z = self.means.float()[k] + torch.exp(self.log_scales.float()[k]) * eps
        return z, k

    @torch.no_grad()
    def restart_components(self, dead: torch.Tensor, new_means: torch.Tensor) -> None:
        """Move dead components to ``new_means`` [len(dead), D] with average weight and scale.

        The restarted components get weight 1/K each (the others keep their relative weights)
        and the mean log-scale of the live components, so they start competitive.
        """
        dead = torch.as_tensor(dead, dtype=torch.long, device=self.means.device)
        if dead.numel() == 0:
            return
        live = torch.ones(self.n_components, dtype=torch.bool, device=dead.device)
        live[dead] = False
        log_w = self.log_weights()
        if live.any():  # live components keep their relative weights and share 1 - n_dead / K
            live_mass = torch.logsumexp(log_w[live], 0)
            log_w[live] += math.log1p(-dead.numel() / self.n_components) - live_mass
        log_w[dead] = -math.log(self.n_components)
        self.logits.copy_(log_w)
        self.means[dead] = new_means.to(self.means)
        scale = self.log_scales[live].mean(0) if live.any() else torch.full_like(self.log_scales[0], math.log(self.init_scale))
        self.log_scales[dead] = scale

    @torch.no_grad()
    def split_components(
        self, dead: torch.Tensor, usage: torch.Tensor, jitter: float = 0.1, generator: torch.Generator | None = None
    ) -> list[int]:
        """Restart each dead component as one half of the most used live component; returns the parents.

        The parent's weight is shared equally between the two halves (the rest of the mixture is
        unchanged), the child copies the parent's scales and the two means are pushed apart by
        +-``jitter`` parent standard deviations along a random sign direction, so both halves start
        with half of the parent's responsibilities and gradient descent separates them. ``usage``
        [K] is the current usage estimate (the parent's share is halved after each split).
        """
        usage = torch.as_tensor(usage, dtype=torch.float32).clone().cpu()
        dead_list = [int(k) for k in torch.as_tensor(dead).flatten().tolist()]
        usage[dead_list] = -1.0
        log_w = self.log_weights()
        parents = []
        for k in dead_list:
            parent = int(torch.argmax(usage))
            parents.append(parent)
            usage[parent] /= 2
            usage[k] = usage[parent]
            log_w[parent] -= math.log(2.0)
            log_w[k] = log_w[parent]
            sign = torch.randint(0, 2, (self.latent_dim,), generator=generator).float() * 2 - 1
            step = jitter * torch.exp(self.log_scales[parent].float()) * sign.to(self.means.device)
            centre = self.means[parent].clone()
            self.means[k] = centre + step
            self.means[parent] = centre - step
            self.log_scales[k] = self.log_scales[parent]
        if self.logits.requires_grad:  # uniform (frozen) mixing weights stay uniform
            self.logits.copy_(log_w)
        return parents
