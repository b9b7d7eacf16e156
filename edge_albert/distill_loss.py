"""The distillation loss: the student's cross-entropy on the labels and KL to the teacher's
temperature-softened logits, plus hidden-state MSE and attention-distribution KL when the
teacher and student share the tokenizer (their positions line up). Weights in
:class:`~edge_albert.config.DistillConfig`; used for preset students (:mod:`~edge_albert.distill`)
and to recover pruned ones (:mod:`~edge_albert.prune`)."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from .config import DistillConfig
from .training import model_inputs


class DistillLoss(nn.Module):
    """Student + projection; the teacher is held outside the module (frozen, not checkpointed)."""

    # Hugging Face models are typed loosely (their submodules are attributes): Any here.
    def __init__(self, student: Any, teacher: Any, cfg: DistillConfig, *,
                 layer_map: Sequence[int] | None = None,
                 hidden_index: Sequence[int] | None = None) -> None:
        """``layer_map`` / ``hidden_index``: for a student cut from the teacher (see
        :mod:`~edge_albert.prune`), the teacher layer of each student layer and the teacher's
        hidden dimension of each student dimension; hidden states are then compared directly."""
        super().__init__()
        self.student = student
        self._teacher = [teacher]  # a list hides it from parameters(), state_dict() and DDP
        self.cfg = cfg
        self.use_hidden = cfg.hidden_weight > 0 and teacher is not None
        self.use_attention = cfg.attention_weight > 0 and teacher is not None
        self.proj: nn.Linear | None = None
        self.hidden_index: torch.Tensor | None = None
        if self.use_hidden and layer_map is not None:
            self.layer_map = [(0, 0)] + [(i + 1, j + 1) for i, j in enumerate(layer_map)]
            if hidden_index is not None:
                self.hidden_index = torch.tensor(list(hidden_index), dtype=torch.long)
        elif self.use_hidden:
            assert teacher is not None
            h_s, h_t = student.config.hidden_size, teacher.config.hidden_size
            self.proj = nn.Linear(h_s, h_t, bias=False)
            if h_s == h_t:
                nn.init.eye_(self.proj.weight)
            s_layers, t_layers = student.config.num_hidden_layers, teacher.config.num_hidden_layers
            self.layer_map = [(0, 0)] + [(i, round(i * t_layers / s_layers)) for i in range(1, s_layers + 1)]

    def forward(self, batch: dict[str, torch.Tensor]):
        cfg = self.cfg
        want = self.use_hidden or self.use_attention
        inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids")}
        s = self.student(**inputs, output_hidden_states=self.use_hidden,
                         output_attentions=self.use_attention)
        t_logits = batch["soft"].float()
        s_logits = s.logits.float()  # bf16 under autocast: the losses are taken in fp32
        T = cfg.temperature
        kd = nn.functional.kl_div(nn.functional.log_softmax(s_logits / T, -1),
                                  nn.functional.softmax(t_logits / T, -1),
                                  reduction="batchmean") * T * T
        ce = nn.functional.cross_entropy(s_logits, batch["labels"])
        loss = cfg.ce_weight * ce + cfg.kd_weight * kd
        logs = {"ce": ce.item(), "kd": kd.item()}
        if want:
            teacher = self._teacher[0]
            with torch.no_grad():
                t = teacher(**model_inputs(teacher, batch), output_hidden_states=self.use_hidden,
                            output_attentions=self.use_attention)
            mask = batch["attention_mask"].bool()
            if self.use_hidden:
                mse = torch.stack([nn.functional.mse_loss(self._student_hidden(s.hidden_states[i])[mask],
                                                          self._teacher_hidden(t.hidden_states[j])[mask])
                                   for i, j in self.layer_map]).mean()
                loss = loss + cfg.hidden_weight * mse
                logs["hidden"] = float(mse.detach())
            if self.use_attention:
                rows = mask.unsqueeze(-1).float()
                t_last = t.attentions[-1].float().mean(1)
                s_last = s.attentions[-1].float().mean(1)
                kl = (t_last * (torch.log(t_last + 1e-9) - torch.log(s_last + 1e-9))).sum(-1)
                kl = (kl * rows.squeeze(-1)).sum() / rows.sum()
                loss = loss + cfg.attention_weight * kl
                logs["attention"] = float(kl.detach())
        return loss, logs

    def _student_hidden(self, h: torch.Tensor) -> torch.Tensor:
        return (self.proj(h) if self.proj is not None else h).float()

    def _teacher_hidden(self, h: torch.Tensor) -> torch.Tensor:
        if self.hidden_index is None:
            return h.float()
        return h.index_select(-1, self.hidden_index.to(h.device)).float()


__all__ = ["DistillLoss"]
