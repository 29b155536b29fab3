"""HSRL: advantage actor-critic in the Semantic Action Space (SPEC 6).

Per update, with target networks for the bootstrap:
    y = r + gamma (1 - terminated) V_target(s')
    critic loss = MSE(V(s), y),  V(s) = sum_l w_l V_l(c_l)
    A = clip(y - V(s), -1, 1)                       (no gradient)
    actor loss = mean_b A_b * mean_k sum_l -log p_l(z_l(item_bk) | s_b) - beta sum_l H(p_l)
The critic reads the policy's contexts detached, so only the actor shapes the encoder.
With ``actor_log_prob='items'`` the actor's term is -log P(item_bk | s_b) renormalised over the
live items instead (the log-probability of the distribution acting samples from).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from hsrl.agents.base import Action, Agent, Catalogue, EnvSpec, adam, freeze, soft_update
from hsrl.agents.reference import candidate_slates, count_reward, expected_reward
from hsrl.errors import ConfigError
from hsrl.nets import HierarchicalPolicy, MultiLevelCritic, StateEncoder, StateEncoderConfig
from hsrl.nets.hierarchical_policy import PrefixPaths, item_log_probs, token_log_probs
from hsrl.replay import Batch
from hsrl.sid.beam import beam_sample, beam_search
from hsrl.slate import greedy_slate, gumbel_noise, log_probs_with_uniform, sample_slate


@dataclass(frozen=True)
class HSRLConfig:
    encoder: StateEncoderConfig = field(default_factory=StateEncoderConfig)
    temperature: float = 1.0
    """Softmax temperature tau of every level."""
    residual: str = "soft"
    """'soft': c_l = LN(c_{l-1} - p_l E_l) (the method); 'sampled': c_l = LN(c_{l-1} - E_l[z_l]),
    each level conditioned on the chosen prefix; 'none': every level reads c_0 (ablation)."""
    critic_hidden: tuple[int, ...] = (256, 64)
    critic_dropout: float = 0.2
    learn_token_weights: bool = True
    """Learn the critic's level weights omega (the reference leaves them at uniform)."""
    single_critic: bool = False
    """Ablation: one critic on c_0 instead of the multi-level critic."""
    actor_lr: float = 1e-3
    critic_lr: float = 1e-3
    weight_decay: float = 1e-5
    entropy_coef: float = 0.1
    advantage_clip: float = 1.0
    gamma: float = 0.9
    target_tau: float = 0.01
    reference_bootstrap: bool = False
    """Reproduce the reference's TD target r + gamma * done * V' (a known bug; off by default)."""
    actor_log_prob: str = "tokens"
    """What the policy gradient raises for the shown items. 'tokens': sum_l log p_l(z_l), as in
    SPEC 6.5 and the reference; it leaves out that acting renormalises over the live items (most
    token combinations hold no item). 'items': log P(item | s) renormalised over the live items,
    the score function of the distribution acting samples from (O(N) per update; items retired
    since a transition was stored are left out of its mean)."""
    explore_epsilon: float = 0.0
    """Weight of a uniform law mixed into the sampling distribution while exploring."""
    item_credit: float = 0.0
    """Per-item credit c: item k of a slate gets the advantage A + c d_k instead of the slate's
    A alone (0: the reference); d_k as ``item_credit_mode`` says."""
    item_credit_mode: str = "response"
    """'response': d_k = y_k - mean_j y_j, the item's response against the slate's mean;
    'marginal': d_k = r(y) - r(y with y_k flipped), what the item's response added to the
    step reward (it follows the reward's shape: under the RL4RS sweet point a ninth click
    lowers the reward, so with 9 clicks each clicked item gets a negative share)."""
    behavior_coef: float = 0.0
    """Weight of a behaviour loss on the replayed responses: -sum_k y_k log P(item_k | s) /
    max(1, sum_k y_k), the clicked items' log-probability under the distribution acting samples
    from (listwise over the live items; O(N) per update). 0: none, as in the reference's RL4RS
    agent."""
    item_critic_coef: float = 0.0
    """Weight of the item critic's pull on the policy (0: no item critic, as in the reference).
    The item critic q(s, i) = sum_l softmax(omega')_l Q_l(c_l(i)) is a multi-level critic read
    on the contexts of item i's SID path, c_l(i) = LN_l(c_{l-1}(i) - E_l[z_l(i)]): one value per
    token prefix, a click logit learned by binary cross-entropy on the replayed response of
    every shown item (its gradient also shapes the encoder and the token embeddings). The actor
    loss gains coef * CE(softmax(q / item_critic_temperature), P(. | s)) over the live items:
    the policy is pulled towards the items the critic expects to be clicked (O(N) per
    update)."""
    item_critic_temperature: float = 0.2
    """Temperature of the item critic's target distribution softmax(q / T)."""
    item_critic_hidden: tuple[int, ...] = (64,)
    """Hidden sizes of the item critic's value MLP (no dropout)."""
    item_critic_lr: float = 1e-3
    logged_coef: float = 0.0
    """Weight of the item critic's binary cross-entropy on a batch of the dataset's logged
    records (slates and responses), drawn beside every replay batch (0: none, as in the
    reference). The logs cover the catalogue more broadly than the agent's own replay and hold
    the logged users' responses. Needs the item critic."""
    slate_assembly: str = "top"
    """How a slate is made from the item distribution. 'top': its K most likely items (sampled
    without replacement while exploring; SPEC 6.3). 'critic' (needs the item critic): the
    policy ranks the live items (by log P, plus Gumbel noise while exploring) and proposes the
    oracle's candidate slates of that ranking, the top m plus the bottom K - m items for every
    m (hsrl.agents.reference.candidate_slates); the item critic's click probabilities, with its
    learned slot term, pick the candidate of highest expected step reward. Under a reward such
    as RL4RS's sweet point, where 8 clicks of 9 pay more than 9, the best slate is not the top
    K."""
    advantage_norm: bool = False
    """Standardise the advantages over the batch (mean 0, std 1) before clipping."""
    per_slot: bool = False
    """Per-slot chains: slot k of the slate runs the HPN from its own context LN(s + q_k) (q_k a
    learned slot query) and has its own token distributions; the slate is filled slot by slot,
    each slot's best (or sampled) item among those not yet shown. Off: one item distribution for
    the whole slate, whose top K items are shown (SPEC 6.3)."""
    decoding: str = "exhaustive"
    """Slate selection: 'exhaustive' scores every live item (O(N L) per user); 'beam' walks the
    SID prefix tree keeping `beam_width` prefixes per level (cost independent of N; see
    hsrl.sid.beam)."""
    beam_width: int = 64
    """Prefixes kept per level by beam decoding (at least the slate size)."""

    def __post_init__(self) -> None:
        if self.decoding not in ("exhaustive", "beam"):
            raise ValueError(f"decoding must be 'exhaustive' or 'beam', got {self.decoding!r}")
        if self.beam_width < 1:
            raise ValueError("beam_width must be at least 1")
        if self.residual not in ("soft", "sampled", "none"):
            raise ValueError(f"residual must be 'soft', 'sampled' or 'none', got {self.residual!r}")
        if self.residual == "sampled" and self.decoding == "beam":
            raise ValueError(
                "beam decoding needs level distributions that do not depend on the "
                "prefix: use residual 'soft' or 'none' with decoding 'beam'"
            )
        if self.actor_log_prob not in ("tokens", "items"):
            raise ValueError(
                f"actor_log_prob must be 'tokens' or 'items', got {self.actor_log_prob!r}"
            )
        if not 0.0 <= self.explore_epsilon < 1.0:
            raise ValueError("explore_epsilon must be in [0, 1)")
        if self.temperature <= 0:
            raise ValueError("temperature must be positive")
        if self.per_slot and (self.residual == "sampled" or self.decoding == "beam"):
            raise ValueError("per_slot needs residual 'soft' or 'none' and decoding 'exhaustive'")
        if self.behavior_coef < 0:
            raise ValueError(f"behavior_coef must not be negative, got {self.behavior_coef}")
        if self.item_critic_coef < 0:
            raise ValueError(f"item_critic_coef must not be negative, got {self.item_critic_coef}")
        if not self.item_critic_temperature > 0 or not self.item_critic_lr > 0:
            raise ValueError("item_critic_temperature and item_critic_lr must be positive")
        if any(size < 1 for size in self.item_critic_hidden):
            raise ValueError(
                f"item_critic_hidden sizes must be at least 1: {self.item_critic_hidden}"
            )
        if self.slate_assembly not in ("top", "critic"):
            raise ValueError(
                f"slate_assembly must be 'top' or 'critic', got {self.slate_assembly!r}"
            )
        if not self.logged_coef >= 0:
            raise ValueError(f"logged_coef must not be negative, got {self.logged_coef}")
        if self.logged_coef and not self.item_critic_coef:
            raise ValueError("logged_coef needs the item critic (item_critic_coef > 0)")
        if self.slate_assembly == "critic" and not self.item_critic_coef:
            raise ValueError("slate_assembly 'critic' needs the item critic (item_critic_coef > 0)")
        if self.item_critic_coef and (self.per_slot or self.decoding == "beam"):
            raise ValueError("item_critic_coef needs per_slot off and decoding 'exhaustive'")
        if self.item_credit_mode not in ("response", "marginal"):
            raise ValueError(
                f"item_credit_mode must be 'response' or 'marginal', got {self.item_credit_mode!r}"
            )


class HSRLAgent(Agent):
    name = "hsrl"
    requires_sid = True
    config_class = HSRLConfig

    def __init__(self, config: HSRLConfig, spec: EnvSpec, catalogue: Catalogue):
        super().__init__(spec, catalogue)
        if catalogue.sid is None:
            raise ConfigError("the hsrl agent needs semantic IDs (--sid DIR from `hsrl sid build`)")
        self.config = config
        if config.decoding == "beam" and config.beam_width < spec.slate_size:
            raise ConfigError(
                f"beam_width {config.beam_width} is smaller than the slate size {spec.slate_size}"
            )
        if config.decoding == "beam" and catalogue.layout is not None:
            raise ConfigError(
                "decoding 'beam' cannot follow the page layout (--layout rows): use decoding "
                "'exhaustive'"
            )
        self.levels = catalogue.sid.levels
        self.codes = catalogue.sid.codes
        self.encoder = StateEncoder(
            config.encoder, spec.item_dim, spec.history_length, spec.profile_dim
        )
        self.policy = HierarchicalPolicy(
            config.encoder.dim,
            self.levels,
            self.codes,
            config.temperature,
            config.residual,
            slots=spec.slate_size if config.per_slot else 0,
        )
        self.critic = MultiLevelCritic(
            config.encoder.dim,
            self.levels,
            config.critic_hidden,
            config.critic_dropout,
            learn_weights=config.learn_token_weights,
            single_level=config.single_critic,
        )
        online = {"encoder": self.encoder, "policy": self.policy, "critic": self.critic}
        self.item_critic = None
        if config.item_critic_coef:
            self.item_critic = MultiLevelCritic(
                config.encoder.dim, self.levels, config.item_critic_hidden, dropout=0.0
            )
            # The item critic's slot term: a click-logit offset per slot of the slate.
            self.item_slot_bias = nn.Parameter(torch.zeros(spec.slate_size))
        self._reward_of_clicks: torch.Tensor | None = None  # r(c), for critic assembly
        self.target = freeze(nn.ModuleDict({k: copy.deepcopy(m) for k, m in online.items()}))
        # The online networks in the same order as the targets (not registered twice).
        self.__dict__["_online"] = nn.ModuleDict(online)
        actor_params = list(self.encoder.parameters()) + list(self.policy.parameters())
        critic_params = [p for p in self.critic.parameters() if p.requires_grad]
        self.actor_optimizer = adam(
            actor_params, lr=config.actor_lr, weight_decay=config.weight_decay
        )
        self.critic_optimizer = adam(
            critic_params, lr=config.critic_lr, weight_decay=config.weight_decay
        )
        self.item_critic_optimizer = None
        if self.item_critic is not None:
            self.item_critic_optimizer = adam(
                [*self.item_critic.parameters(), self.item_slot_bias],
                lr=config.item_critic_lr,
                weight_decay=config.weight_decay,
            )

    @property
    def uses_logged_data(self) -> bool:
        return bool(self.config.logged_coef)

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        optimizers = {"actor": self.actor_optimizer, "critic": self.critic_optimizer}
        if self.item_critic_optimizer is not None:
            optimizers["item_critic"] = self.item_critic_optimizer
        return optimizers

    # --- acting -----------------------------------------------------------------------------
    def _state(self, obs: dict[str, torch.Tensor], encoder: StateEncoder) -> torch.Tensor:
        return encoder(obs["history"], obs["user_profile"], self.catalogue.features)

    def item_scores(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        """log P(item | s) over the catalogue, (B, N + 1), -inf for items not live."""
        return self._item_log_probs(self._state(obs, self.encoder))

    def _item_log_probs(
        self, state: torch.Tensor, log_probs: torch.Tensor | None = None
    ) -> torch.Tensor:
        """log P(item | s) from states (B, d); ``log_probs`` reuses a computed soft chain."""
        sid = self.catalogue.sid
        live = self.catalogue.live & sid.live
        if self.config.residual == "sampled":
            return self.policy.tree_item_log_probs(state, self._prefix_paths(live), live)
        if log_probs is None:
            log_probs = self.policy(state).log_probs
        if log_probs.ndim == 4:  # per-slot chains: (B, K, L, V) -> (B, K, N + 1)
            b, k = log_probs.shape[:2]
            flat = item_log_probs(log_probs.flatten(0, 1), sid.item_sid, live)
            return flat.view(b, k, -1)
        return item_log_probs(log_probs, sid.item_sid, live)

    def _prefix_paths(self, live: torch.Tensor) -> PrefixPaths:
        """The live SID tree, rebuilt only when the SID table or the live set changed."""
        parts = (self.catalogue.sid.item_sid, self.catalogue.sid.live, self.catalogue.live)
        key = tuple((t.data_ptr(), t._version) for t in parts)
        if getattr(self, "_paths_key", None) != key:
            self._paths = PrefixPaths.build(self.catalogue.sid.item_sid, live)
            self._paths_key = key
        return self._paths

    @torch.no_grad()
    def act(
        self, obs: dict[str, torch.Tensor], *, explore: bool, generator: torch.Generator | None
    ) -> Action:
        if self.config.decoding == "beam":
            return self._act_beam(obs, explore, generator)
        state = self._state(obs, self.encoder)
        scores = self._item_log_probs(state)
        if self.config.slate_assembly == "critic":
            slate = self._assemble_by_critic(state, scores, explore, generator)
        elif self.config.per_slot:
            slate = self._fill_slots(scores, explore, generator)
        elif explore:
            slate = sample_slate(
                scores,
                self.spec.slate_size,
                generator,
                self.config.explore_epsilon,
                self.catalogue.layout,
            )
        else:
            slate = greedy_slate(scores, self.spec.slate_size, self.catalogue.layout)
        tokens = self.catalogue.sid.item_sid[slate]  # (B, K, L)
        return Action(slate, tokens.flatten(1))

    def _item_values(self, state: torch.Tensor) -> torch.Tensor:
        """The item critic's click logits q(s, i) over the catalogue (B, N + 1), -inf if not live."""
        assert self.item_critic is not None
        live = self.catalogue.live & self.catalogue.sid.live
        q = self.item_critic(self.policy.tree_contexts(state, self._prefix_paths(live)))
        return q.masked_fill(~live, float("-inf"))

    def _assemble_by_critic(
        self,
        state: torch.Tensor,
        scores: torch.Tensor,
        explore: bool,
        generator: torch.Generator | None,
    ) -> torch.Tensor:
        """``slate_assembly='critic'``: the policy's candidate slates, the critic's choice."""
        if self.reward_fn is None:
            raise ConfigError("slate_assembly 'critic' needs the env's reward function")
        if self._reward_of_clicks is None:
            self._reward_of_clicks = count_reward(
                self.reward_fn, self.spec.slate_size, scores.device
            )
        ranking = scores
        if explore:
            ranking = log_probs_with_uniform(scores, self.config.explore_epsilon)
            ranking = ranking + gumbel_noise(ranking, generator)
        slots = self.item_slot_bias.detach()
        slates = candidate_slates(ranking, slots, self.catalogue.layout, check=False)  # (B, M, K)
        b, m, k = slates.shape
        q = self._item_values(state)
        logits = q.unsqueeze(1).expand(b, m, -1).gather(2, slates) + slots
        values = expected_reward(torch.sigmoid(logits), self._reward_of_clicks)  # (B, M)
        best = values.argmax(dim=1).view(b, 1, 1).expand(b, 1, k)
        return slates.gather(1, best).squeeze(1)

    def _fill_slots(
        self, scores: torch.Tensor, explore: bool, generator: torch.Generator | None
    ) -> torch.Tensor:
        """Slot by slot, the best (or a sampled) item of each slot's distribution (B, K, N + 1)
        among the items not yet in the slate (and of the slot's row under a page layout)."""
        b, k, n1 = scores.shape
        taken = torch.zeros(b, n1, dtype=torch.bool, device=scores.device)
        layout = self.catalogue.layout
        eps = self.config.explore_epsilon
        picks = []
        for slot in range(k):
            logits = scores[:, slot]
            if layout is not None:
                logits = logits.masked_fill(layout.item_row != layout.slot_row[slot], -torch.inf)
            logits = logits.masked_fill(taken, -torch.inf)
            if explore:
                logits = log_probs_with_uniform(torch.log_softmax(logits, dim=-1), eps)
                logits = logits + gumbel_noise(logits, generator)
            pick = logits.argmax(dim=-1)  # (B,)
            taken = taken.scatter(1, pick.unsqueeze(1), True)
            picks.append(pick)
        return torch.stack(picks, dim=1)

    def _act_beam(
        self, obs: dict[str, torch.Tensor], explore: bool, generator: torch.Generator | None
    ) -> Action:
        """Slate by beam decoding over the SID tree; live items are those of the SID index."""
        log_probs = self.policy(self._state(obs, self.encoder)).log_probs  # (B, L, V)
        sid, k, width = self.catalogue.sid, self.spec.slate_size, self.config.beam_width
        if explore:
            found = beam_sample(log_probs, sid, k, width, generator, self.config.explore_epsilon)
        else:
            found = beam_search(log_probs, sid, k, width)
        return Action(found.items, found.sid.flatten(1))

    # --- learning ---------------------------------------------------------------------------
    def update(self, batch: Batch, logged: Batch | None = None) -> dict[str, torch.Tensor]:
        cfg = self.config
        obs = {"history": batch.history, "user_profile": batch.user_profile}
        next_obs = {"history": batch.next_history, "user_profile": batch.next_user_profile}
        state = self._state(obs, self.encoder)
        output = self.policy(state)
        value = self.critic(self._critic_contexts(output.contexts).detach())  # (B,)
        with torch.no_grad():
            target = self.target
            next_contexts = target["policy"](self._state(next_obs, target["encoder"])).contexts
            next_value = target["critic"](self._critic_contexts(next_contexts))
            done = batch.terminated
            keep = done if cfg.reference_bootstrap else 1.0 - done
            td_target = batch.reward + cfg.gamma * keep * next_value  # (B,)
        critic_loss = F.mse_loss(value, td_target)
        advantage = td_target - value.detach()
        if cfg.advantage_norm:
            advantage = (advantage - advantage.mean()) / advantage.std().clamp_min(1e-6)
        advantage = advantage.clamp(-cfg.advantage_clip, cfg.advantage_clip)  # (B,)
        # Each shown item's advantage (B, K): the slate's, plus its own response's share.
        item_advantage = advantage.unsqueeze(1).expand_as(batch.response)
        if cfg.item_credit:
            item_advantage = item_advantage + cfg.item_credit * self._item_shares(batch.response)

        tokens = batch.action.long().view(batch.action.shape[0], -1, self.levels)  # (B, K, L)
        if cfg.residual == "sampled":
            levels = self.policy.path_log_probs(state, tokens)  # (B, K, L, V), teacher forced
            entropy = -(levels.exp() * levels).sum(dim=-1).sum(dim=-1).mean(dim=-1)  # (B,)
        elif cfg.per_slot:
            levels = output.log_probs  # (B, K, L, V): slot k's distributions
            entropy = -(levels.exp() * levels).sum(dim=-1).sum(dim=-1).mean(dim=-1)  # (B,)
        else:
            levels = output.log_probs  # (B, L, V), the same for every item of the slate
            entropy = -(levels.exp() * levels).sum(dim=-1).sum(dim=-1)  # (B,)
        # log P(item | s) of the distribution acting samples from, once, for the terms that read
        # it; ``shown`` is its value at each shown item, -inf for items retired since then.
        item_logp = shown = None
        if cfg.actor_log_prob == "items" or cfg.behavior_coef or cfg.item_critic_coef:
            item_logp = self._item_log_probs(state, output.log_probs)
            shown = self._at_shown_items(item_logp, batch.slate)  # (B, K)
        if shown is not None and cfg.actor_log_prob == "items":
            usable = torch.isfinite(shown)  # False for items retired since the transition
            item_nll = -torch.where(usable, shown, torch.zeros_like(shown))  # (B, K)
            count = usable.sum(dim=-1, keepdim=True).clamp(min=1)
        else:
            if cfg.residual == "sampled" or cfg.per_slot:
                chosen = levels.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)  # (B, K, L)
            else:
                chosen = token_log_probs(levels, tokens)  # (B, K, L)
            item_nll = -chosen.sum(dim=-1)  # (B, K)
            count = item_nll.new_full((item_nll.shape[0], 1), item_nll.shape[1])
        weighted = (item_advantage * item_nll / count).sum(dim=-1)  # (B,)
        actor_loss = weighted.mean() - cfg.entropy_coef * entropy.mean()
        behavior_loss = None
        if shown is not None and cfg.behavior_coef:
            behavior_loss = self._behavior_loss(shown, batch.response)
            actor_loss = actor_loss + cfg.behavior_coef * behavior_loss
        item_critic_loss = item_pull = logged_loss = None
        if self.item_critic is not None:
            item_critic_loss, item_pull = self._item_critic_losses(state, tokens, batch, item_logp)
            actor_loss = actor_loss + cfg.item_critic_coef * item_pull
            critic_loss_total = critic_loss + item_critic_loss
            if logged is not None and cfg.logged_coef:
                logged_loss = self._logged_item_critic_loss(logged)
                critic_loss_total = critic_loss_total + cfg.logged_coef * logged_loss
        else:
            critic_loss_total = critic_loss

        # The critic reads detached contexts and the advantage is detached, so one backward
        # pass of the sum gives each network exactly its own loss's gradients.
        optimizers = self.optimizers().values()
        for optimizer in optimizers:
            optimizer.zero_grad(set_to_none=True)
        (critic_loss_total + actor_loss).backward()
        gradients = self._gradient_norms()
        for optimizer in optimizers:
            optimizer.step()

        soft_update(self.target, self._online, cfg.target_tau)
        metrics = {
            "loss/critic": critic_loss.detach(),
            "loss/actor": actor_loss.detach(),
            "value/mean": value.detach().mean(),
            "advantage/mean": advantage.mean(),
            "policy/entropy": entropy.detach().mean(),
        }
        if behavior_loss is not None:
            metrics["loss/behavior"] = behavior_loss.detach()
        if logged_loss is not None:
            metrics["loss/item_critic_logged"] = logged_loss.detach()
        if item_critic_loss is not None:
            metrics["loss/item_critic"] = item_critic_loss.detach()
            metrics["loss/item_pull"] = item_pull.detach()
        metrics.update(gradients)
        rows = slice(0, self._ITEM_ENTROPY_ROWS)
        metrics.update(
            self._diagnostics(
                state[rows],
                output,
                value.detach(),
                td_target,
                advantage,
                None if item_logp is None else item_logp[rows],
            )
        )
        return metrics

    def _item_critic_losses(
        self,
        state: torch.Tensor,
        tokens: torch.Tensor,
        batch: Batch,
        item_logp: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The item critic's BCE on the shown items' responses, and the policy's pull towards
        softmax(q / T) over the live items (``item_critic_coef``)."""
        assert self.item_critic is not None
        shown = self.item_critic(self.policy.path_contexts(state, tokens))  # (B, K) logits
        shown = shown + self.item_slot_bias  # slot k of the slate is shown at position k
        bce = F.binary_cross_entropy_with_logits(shown, batch.response.float())
        with torch.no_grad():
            q = self._item_values(state)  # (B, N + 1)
            target = torch.softmax(q / self.config.item_critic_temperature, dim=-1)
        logp = torch.where(torch.isfinite(item_logp), item_logp, torch.zeros_like(item_logp))
        pull = -(target * logp).sum(dim=-1).mean()
        return bce, pull

    def _logged_item_critic_loss(self, logged: Batch) -> torch.Tensor:
        """The item critic's BCE on logged slates and responses (``logged_coef``): the same
        click model as on replay, read at the logged users' states."""
        assert self.item_critic is not None
        obs = {"history": logged.history, "user_profile": logged.user_profile}
        state = self._state(obs, self.encoder)
        tokens = self.catalogue.sid.item_sid[logged.slate]  # (B, K, L); -1 for retired items
        known = (tokens >= 0).all(dim=-1).float()  # items retired since the logs have no SID
        contexts = self.policy.path_contexts(state, tokens.clamp(min=0))
        shown = self.item_critic(contexts) + self.item_slot_bias
        bce = F.binary_cross_entropy_with_logits(shown, logged.response.float(), reduction="none")
        return (bce * known).sum() / known.sum().clamp(min=1.0)

    @staticmethod
    def _at_shown_items(item_logp: torch.Tensor, slate: torch.Tensor) -> torch.Tensor:
        """log P of each shown item (B, K): under the slate's one distribution (B, N + 1), or
        with per-slot chains (B, K, N + 1) under slot k's distribution for the item in slot k."""
        if item_logp.ndim == 3:
            return item_logp.gather(2, slate.unsqueeze(-1)).squeeze(-1)
        return item_logp.gather(1, slate)

    @staticmethod
    def _behavior_loss(shown: torch.Tensor, response: torch.Tensor) -> torch.Tensor:
        """-sum_k y_k log P(item_k | s) / max(1, sum_k y_k), mean over the batch (config docs);
        ``shown`` (B, K) from :meth:`_at_shown_items`."""
        clicked = response.float() * torch.isfinite(shown)  # retired items left out
        logp = torch.where(torch.isfinite(shown), shown, torch.zeros_like(shown))
        per_user = -(clicked * logp).sum(dim=-1) / clicked.sum(dim=-1).clamp(min=1.0)
        return per_user.mean()

    def _critic_contexts(self, contexts: torch.Tensor) -> torch.Tensor:
        """The contexts (B, L + 1, d) the critic reads: per-slot chains are averaged over slots."""
        return contexts.mean(dim=1) if contexts.ndim == 4 else contexts

    def _item_shares(self, response: torch.Tensor) -> torch.Tensor:
        """d (B, K): each shown item's share of the step's outcome (``item_credit_mode``)."""
        response = response.float()
        if self.config.item_credit_mode == "response":
            return response - response.mean(dim=1, keepdim=True)
        if self.reward_fn is None:
            raise ConfigError("item_credit_mode 'marginal' needs the env's reward function")
        b, k = response.shape
        flip = torch.eye(k, device=response.device, dtype=torch.bool)  # (K, K)
        flipped = torch.where(flip, 1.0 - response.unsqueeze(1), response.unsqueeze(1))
        reward = self.reward_fn(response).float()  # (B,)
        without = self.reward_fn(flipped.reshape(b * k, k)).float().view(b, k)
        return reward.unsqueeze(1) - without

    # --- diagnostics --------------------------------------------------------------------------
    # Rows of the batch whose item distribution is measured (O(N) each).
    _ITEM_ENTROPY_ROWS = 16

    @torch.no_grad()
    def _diagnostics(
        self,
        state: torch.Tensor,
        output: Any,
        value: torch.Tensor,
        td_target: torch.Tensor,
        advantage: torch.Tensor,
        item_logp: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """What shows where learning stalls (docs/hsrl.md, "Diagnostics"); no host sync.

        ``state`` holds the rows whose item distribution is measured (``item_logp``, when the
        update already computed it for them).

        Per level l: ``policy/entropy_l{l}`` (mean entropy of p_l, nats) and
        ``policy/code_usage_l{l}`` (exp of the entropy of the batch-mean p_l: how many codes the
        policy spreads over across users). ``policy/item_entropy``: entropy of the distribution
        acting samples from, over the live items (on up to 16 rows of the batch).
        ``advantage/std``; ``critic/td_error`` (mean |y - V|, before clipping);
        ``critic/explained_variance`` (1 - Var(y - V) / Var(y)); ``critic/omega_l{l}`` (the
        level weights softmax(omega), l = 0..L).
        """
        metrics: dict[str, torch.Tensor] = {}
        levels = output.log_probs.detach()  # (B, L, V), or (B, K, L, V) per slot
        if levels.ndim == 4:
            levels = levels.flatten(0, 1)
        probs = levels.exp()
        per_level = -(probs * levels).sum(dim=-1).mean(dim=0)  # (L,)
        mean_probs = probs.mean(dim=0)  # (L, V)
        usage = torch.exp(-(mean_probs * mean_probs.clamp_min(1e-12).log()).sum(dim=-1))  # (L,)
        for level in range(self.levels):
            metrics[f"policy/entropy_l{level + 1}"] = per_level[level]
            metrics[f"policy/code_usage_l{level + 1}"] = usage[level]
        if item_logp is None:
            item_logp = self._item_log_probs(state)  # (R, N + 1) or (R, K, N + 1), -inf: not live
        item_p = item_logp.exp()
        finite = torch.where(torch.isfinite(item_logp), item_logp, torch.zeros_like(item_logp))
        metrics["policy/item_entropy"] = -(item_p * finite).sum(dim=-1).mean()
        metrics["advantage/std"] = advantage.std(unbiased=False)
        error = td_target - value
        metrics["critic/td_error"] = error.abs().mean()
        metrics["critic/explained_variance"] = 1.0 - error.var(unbiased=False) / td_target.var(
            unbiased=False
        ).clamp_min(1e-8)
        for level, weight in enumerate(self.critic.weights.detach()):
            metrics[f"critic/omega_l{level}"] = weight
        return metrics

    def _gradient_norms(self) -> dict[str, torch.Tensor]:
        """L2 norm of the gradient of each module's parameters (``grad_norm/<module>``)."""
        norms = {}
        for name, module in (
            ("encoder", self.encoder),
            ("policy", self.policy),
            ("critic", self.critic),
        ):
            grads = [p.grad for p in module.parameters() if p.grad is not None]
            if grads:
                norms[f"grad_norm/{name}"] = torch.linalg.vector_norm(
                    torch.stack(torch._foreach_norm(grads))
                )
        return norms
