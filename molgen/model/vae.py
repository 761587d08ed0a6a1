"""MoleculeVAE: GRU encoder q(z|x), mixture prior p(z), GRU decoder p(x|z); kind="lm" drops the latent.

All quantities are in nats per molecule: log p(x|z) is summed over a molecule's tokens, ``<eos>``
included and padding excluded. Token tensors hold SELFIES ids followed by ``<eos>``, right-padded
with ``pad_id`` and without ``<bos>`` (the decoder prepends it).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from molgen.nn.decoder import DecoderStepper, GRUDecoder
from molgen.nn.encoder import GRUEncoder
from molgen.nn.prior import LOG_2PI, MixturePrior

KINDS = ("vae", "lm")


def gaussian_entropy(logvar: torch.Tensor) -> torch.Tensor:
    """Entropy of N(mu, diag(exp(logvar))) per dimension: [..., D] -> [..., D] (nats)."""
    return 0.5 * (1.0 + LOG_2PI + logvar)


def kl_estimate(entropy: torch.Tensor, log_p: torch.Tensor) -> torch.Tensor:
    """KL(q || p) = -H[q] - E_q[log p(z)] from the exact entropy and log p of S draws: [...], [S, ...] -> [...]."""
    return -entropy - log_p.mean(0)


def reparameterise(
    mu: torch.Tensor, logvar: torch.Tensor, n_samples: int, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """``n_samples`` draws z = mu + sigma * eps from q(z|x): (z, eps), both [S, B, D].

    Without a ``generator`` eps comes from the default stream of mu's device (training); with a
    CPU ``generator`` it is drawn on the CPU and moved, so a seed gives the same draws on any device.
    """
    shape = (n_samples, *mu.shape)
    if generator is None:
        eps = torch.randn(shape, device=mu.device)
    else:
        eps = torch.randn(shape, generator=generator).to(mu.device)
    return mu + torch.exp(0.5 * logvar) * eps, eps


@dataclass
class PosteriorDraws:
    """Reparameterised draws from q(z|x) with the parts of the KL estimate (docs/DESIGN.md §4.2)."""

    z: torch.Tensor  # [S, B, D]
    eps: torch.Tensor  # [S, B, D], z = mu + sigma * eps
    logvar: torch.Tensor  # [B, D]
    entropy: torch.Tensor  # [B, D], exact entropy of q per dimension
    joint: torch.Tensor  # [S, B, K], log pi_k + log N(z; mu_k, s_k)

    @property
    def log_pz(self) -> torch.Tensor:
        """log p(z) of each draw [S, B]."""
        return torch.logsumexp(self.joint, dim=-1)

    @property
    def kl(self) -> torch.Tensor:
        """The KL estimate per molecule [B]: exact entropy, Monte-Carlo cross-entropy."""
        return kl_estimate(self.entropy.sum(-1), self.log_pz)

    def log_q(self) -> torch.Tensor:
        """log q(z|x) of each draw [S, B]."""
        return (-0.5 * (self.eps**2 + LOG_2PI) - 0.5 * self.logvar).sum(-1)


def draw_posterior(
    prior: MixturePrior,
    mu: torch.Tensor,
    logvar: torch.Tensor,
    n_samples: int,
    generator: torch.Generator | None = None,
) -> PosteriorDraws:
    """``n_samples`` draws z ~ q(z|x) (see ``reparameterise`` for the noise), q's entropy and log p(z)."""
    z, eps = reparameterise(mu, logvar, n_samples, generator)
    return PosteriorDraws(z, eps, logvar, gaussian_entropy(logvar), prior.joint_log_prob(z))


def trim(tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """``tokens`` cut to the batch's longest length; on an accelerator left as it is, since reading
    the length would wait for the device every step (the training batches arrive trimmed)."""
    return tokens[:, : int(lengths.max())] if lengths.device.type == "cpu" else tokens


class MoleculeVAE(nn.Module):
    """SELFIES VAE with a learned mixture-of-Gaussians prior (or, with kind="lm", a GRU language model)."""

    def __init__(
        self,
        vocab_size: int,
        pad_id: int = 0,
        bos_id: int = 1,
        eos_id: int = 2,
        max_len: int = 128,
        emb_dim: int = 128,
        enc_hidden: int = 256,
        enc_layers: int = 1,
        dec_hidden: int = 512,
        dec_layers: int = 1,
        latent_dim: int = 64,
        n_components: int = 10,
        word_dropout: float = 0.0,
        kind: str = "vae",
        mu_batchnorm: float = 0.0,
    ) -> None:
        super().__init__()
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")
        self.hparams_dict = dict(
            vocab_size=vocab_size, pad_id=pad_id, bos_id=bos_id, eos_id=eos_id, max_len=max_len,
            emb_dim=emb_dim, enc_hidden=enc_hidden, enc_layers=enc_layers, dec_hidden=dec_hidden,
            dec_layers=dec_layers, latent_dim=latent_dim, n_components=n_components,
            word_dropout=word_dropout, kind=kind, mu_batchnorm=mu_batchnorm,
        )  # fmt: skip
        self.kind = kind
        self.pad_id, self.bos_id, self.eos_id, self.max_len = pad_id, bos_id, eos_id, max_len
        self.latent_dim = latent_dim if kind == "vae" else 0
        self.word_dropout = word_dropout
        if kind == "vae":
            self.encoder = GRUEncoder(vocab_size, pad_id, emb_dim, enc_hidden, enc_layers, latent_dim, mu_batchnorm)
            self.prior = MixturePrior(latent_dim, n_components)
        self.decoder = GRUDecoder(vocab_size, pad_id, emb_dim, dec_hidden, dec_layers, self.latent_dim)

    # ------------------------------------------------------------------ encoder
    def encode(self, tokens: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """q(z|x) parameters (mu[B, D], logvar[B, D]); unchanged by extra right padding."""
        if self.kind != "vae":
            raise ValueError("a language model (kind='lm') has no encoder")
        return self.encoder(trim(tokens, lengths), lengths)

    # ------------------------------------------------------------------ decoder
    def decoder_init(self, z: torch.Tensor | None, batch_size: int) -> torch.Tensor:
        """Initial GRU state [layers, B, H] for latents z[B, D] (None for kind='lm')."""
        return self.decoder.initial_state(self._check_z(z), batch_size)

    def decoder_step(
        self, prev_tokens: torch.Tensor, z: torch.Tensor | None, h: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One autoregressive step: previous ids [B] -> (next-token logits [B, V] float32, new state)."""
        logits, h = self.decoder(prev_tokens.unsqueeze(1), self._check_z(z), h)
        return logits[:, 0], h

    def decoder_stepper(self, z: torch.Tensor | None) -> DecoderStepper:
        """``decoder_step`` for latents z [B, D] (None for kind='lm') with the per-token and
        per-sequence input projections made once: the sampler's inner loop."""
        return DecoderStepper(self.decoder, self._check_z(z))

    def log_px_z(self, tokens: torch.Tensor, lengths: torch.Tensor, z: torch.Tensor | None) -> torch.Tensor:
        """Teacher-forced log p(x|z) in nats per molecule: z[S, B, D] -> [S, B], z[B, D] -> [B].

        With kind='lm' pass z=None; the result is then the exact log p(x).
        """
        z = self._check_z(z)
        tokens = trim(tokens, lengths)
        batch, length = tokens.shape
        n_samples = z.shape[0] if z is not None and z.dim() == 3 else None
        if n_samples is not None:
            z = z.reshape(n_samples * batch, -1)
            tokens, lengths = tokens.repeat(n_samples, 1), lengths.repeat(n_samples)
        inputs = torch.cat([torch.full_like(tokens[:, :1], self.bos_id), tokens[:, :-1]], dim=1)
        if self.training and self.word_dropout > 0:
            drop = torch.rand(inputs.shape, device=inputs.device) < self.word_dropout
            drop[:, 0] = False
            inputs = inputs.masked_fill(drop, self.pad_id)
        logits, _ = self.decoder(inputs, z, self.decoder.initial_state(z, inputs.shape[0]))
        logp = torch.log_softmax(logits, dim=-1).gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
        mask = torch.arange(length, device=tokens.device).unsqueeze(0) < lengths.unsqueeze(1)
        out = (logp * mask).sum(-1)
        return out.view(n_samples, batch) if n_samples is not None else out

    def _check_z(self, z: torch.Tensor | None) -> torch.Tensor | None:
        if self.kind == "vae" and z is None:
            raise ValueError("a VAE decoder needs latents z")
        return z if self.kind == "vae" else None

    # ------------------------------------------------------------------ objective
    def elbo_terms(
        self,
        tokens: torch.Tensor,
        lengths: torch.Tensor,
        n_samples: int = 8,
        beta: float = 1.0,
        free_bits: float = 0.0,
        kl_target: float = 0.0,
    ) -> dict[str, torch.Tensor]:
        """Per-molecule ``rec``, ``kl``, ``elbo`` (at beta = 1, nats) [B], the scalar training ``loss``,
        the responsibilities ``resp`` [B, K] (p(k|z) averaged over the draws) and ``mu`` [B, D] (detached).

        KL(q || p) has no closed form for a mixture prior. It is estimated as
        ``-H[q] - E_q[log p(z)]``: the Gaussian entropy of q(z|x) is exact and only the
        cross-entropy is Monte-Carlo averaged over ``n_samples`` reparameterised draws (docs/DESIGN.md
        §4); the extra draws cost prior log-densities only, not decoder passes (the reconstruction
        uses the first draw). Unbiased; for K = 1 it converges to the closed-form Gaussian KL.
        Why the exact entropy: for z = mu + sigma * eps, ``log q(z)`` is ``-sum log sigma -
        |eps|^2 / 2 + c``, so the naive ``log q(z) - log p(z)`` has the same gradient but adds
        |eps|^2 / 2 noise (variance D / 2 per draw) to the value. Once posteriors are narrower than
        the prior (any trained model) that noise dominates and the exact entropy cuts the variance
        many times (tests/test_model.py); only while q is as wide as p (at initialisation) do the
        two noises partly cancel and the naive value is the steadier one.

        ``loss = -(mean rec - beta * KL term)``. With ``free_bits`` > 0 (nats per dimension,
        batch level) the KL term is ``KL - sum_d KL_d + sum_d max(free_bits, KL_d)`` where
        KL_d is the batch-mean KL of dimension d against the prior's 1-D marginal: dimensions
        below the floor stop being pushed towards the prior while the rest of the KL is unchanged.

        With ``kl_target`` > 0 (nats per molecule, a target rate on the batch-mean KL): while the
        batch's KL is below the target, its gradient reaches only the prior (z and the entropy are
        detached), so the encoder is not pulled towards the prior and the prior still follows the
        posteriors; at or above the target the KL term is the plain one. The value is the same either
        way. Unlike ``free_bits`` this works on the whole KL, which against a mixture prior is not a
        sum over dimensions.
        """
        if self.kind == "lm":
            rec = self.log_px_z(tokens, lengths, None)
            zero = torch.zeros_like(rec)
            return {"rec": rec, "kl": zero, "elbo": rec, "loss": -rec.mean()}
        mu, logvar = self.encode(tokens, lengths)
        draws = draw_posterior(self.prior, mu, logvar, n_samples)
        z, kl = draws.z, draws.kl
        rec = self.log_px_z(tokens, lengths, z[0])
        kl_term = kl.mean()
        if free_bits > 0:
            kl_d = kl_estimate(draws.entropy, self.prior.marginal_log_prob(z)).mean(0)  # [D]
            kl_term = kl_term - kl_d.sum() + kl_d.clamp(min=free_bits).sum()
        if kl_target > 0:
            prior_only = kl_estimate(draws.entropy.detach().sum(-1), self.prior.log_prob(z.detach()))
            kl_term = torch.where(kl_term.detach() < kl_target, prior_only.mean(), kl_term)
        loss = -(rec.mean() - beta * kl_term)
        resp = torch.softmax(draws.joint, dim=-1).mean(0)  # p(k | z) averaged over the draws [B, K]
        return {"rec": rec, "kl": kl, "elbo": rec - kl, "loss": loss, "resp": resp, "mu": mu.detach()}

    @torch.no_grad()
    def reconstruction_accuracy(self, tokens: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Teacher-forced argmax accuracy with z = mu: (fraction of tokens right [B], all tokens right [B])."""
        tokens = trim(tokens, lengths)
        z = self.encode(tokens, lengths)[0] if self.kind == "vae" else None
        inputs = torch.cat([torch.full_like(tokens[:, :1], self.bos_id), tokens[:, :-1]], dim=1)
        logits, _ = self.decoder(inputs, z, self.decoder.initial_state(z, tokens.shape[0]))
        mask = torch.arange(tokens.shape[1], device=tokens.device).unsqueeze(0) < lengths.unsqueeze(1)
        right = (logits.argmax(-1) == tokens) & mask
        n_right = right.sum(-1)
        return n_right.float() / lengths.float(), n_right == lengths

    def n_parameters(self) -> int:
        """Number of trainable parameters."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)


__all__ = ["MoleculeVAE", "KINDS", "PosteriorDraws", "draw_posterior", "gaussian_entropy", "kl_estimate", "reparameterise"]
