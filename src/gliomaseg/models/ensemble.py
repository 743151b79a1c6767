"""Fold ensembles: members that share a config, averaged at the logits."""

from __future__ import annotations

from collections.abc import Sequence

import torch


class MeanEnsemble(torch.nn.Module):
    """Members run on the same input; the output is the mean of their logits."""

    def __init__(self, members: Sequence[torch.nn.Module]):
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        self.members = torch.nn.ModuleList(members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.members[0](x)
        for member in self.members[1:]:
            out = out + member(x)
        return out / len(self.members)


def member_state(state_dict: dict[str, torch.Tensor], index: int) -> dict[str, torch.Tensor]:
    """The weights of member ``index`` of an ensemble state dict, without the prefix."""
    prefix = f"members.{index}."
    return {k[len(prefix) :]: v for k, v in state_dict.items() if k.startswith(prefix)}
