"""MONAI's residual ``UNet`` in plain torch, so inference does not import MONAI.

``import monai`` takes about 5 s on a 2-core CPU (it imports every submodule, and with
``transformers`` installed, BERT code too): more than the network takes to segment a case.
:class:`ResidualUNet` builds the module tree of ``monai.networks.nets.UNet`` with strided
convolutions, ``kernel_size=3``, ``up_kernel_size=3``, PReLU, ``adn_ordering="NDA"`` and
``bias=True`` (what ``residual_unet`` configs build): the same submodule names, types,
constructor arguments, registration order and parameter-creation order. So

* MONAI's ``state_dict`` loads into it with the same keys (old checkpoints keep working);
* under the same seed it draws the same initial weights;
* its forward pass runs the same torch operations in the same order, so the outputs are
  bit-for-bit equal in train and eval mode (``tests/test_plain_unet.py`` checks this
  against MONAI for 2D and 3D, batch and instance norm, 0-2 residual units, dropout);
* :func:`gliomaseg.models.inference.fuse_batch_norm` and channels-last conversion see the same
  ``conv`` / ``adn`` structure.

Other MONAI options (other kernel sizes, activations, ADN orderings) are not mirrored.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

_CONV: dict[int, type[nn.Conv2d | nn.Conv3d]] = {2: nn.Conv2d, 3: nn.Conv3d}
_CONV_T: dict[int, type[nn.ConvTranspose2d | nn.ConvTranspose3d]] = {
    2: nn.ConvTranspose2d,
    3: nn.ConvTranspose3d,
}
_NORM: dict[tuple[str, int], type[nn.Module]] = {
    ("batch", 2): nn.BatchNorm2d,
    ("batch", 3): nn.BatchNorm3d,
    ("instance", 2): nn.InstanceNorm2d,
    ("instance", 3): nn.InstanceNorm3d,
}
_KERNEL = 3
_PADDING = 1  # MONAI's same_padding(3)


def _norm(norm: str, spatial_dims: int, channels: int) -> nn.Module:
    """MONAI's ``get_norm_layer``: instance norm with a learnable affine (``monai_norm``)."""
    if (norm, spatial_dims) not in _NORM:
        raise ValueError(f"norm must be 'batch' or 'instance', got {norm!r}")
    if norm == "instance":
        return _NORM[norm, spatial_dims](channels, affine=True)
    return _NORM[norm, spatial_dims](channels)


class ADN(nn.Sequential):
    """MONAI ``ADN`` with ordering ``"NDA"``: norm ``N``, dropout ``D``, PReLU ``A``.

    MONAI creates the layers in the order N, A, D and registers them N, D, A; neither norm
    nor PReLU draws random numbers, so only the registration order matters here.
    """

    def __init__(self, *, norm: str, spatial_dims: int, channels: int, dropout: float) -> None:
        super().__init__()
        self.add_module("N", _norm(norm, spatial_dims, channels))
        # MONAI's Convolution passes dropout_dim=1: element-wise nn.Dropout, even at p=0.
        self.add_module("D", nn.Dropout(p=float(dropout)))
        self.add_module("A", nn.PReLU())


class Convolution(nn.Sequential):
    """MONAI ``Convolution``: a 3x3(x3) (transposed) convolution ``conv``, then ``adn``.

    Args:
        spatial_dims: 2 or 3.
        in_channels: Input channels.
        out_channels: Output channels.
        strides: Stride (2 halves, or for ``is_transposed`` doubles, every spatial size).
        norm: ``"batch"`` or ``"instance"``.
        dropout: Dropout probability.
        conv_only: Only the convolution (no ``adn``).
        is_transposed: Transposed convolution, ``output_padding = strides - 1``.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        *,
        strides: int,
        norm: str,
        dropout: float,
        conv_only: bool = False,
        is_transposed: bool = False,
    ) -> None:
        super().__init__()
        conv: nn.Module
        if is_transposed:
            conv = _CONV_T[spatial_dims](
                in_channels,
                out_channels,
                kernel_size=_KERNEL,
                stride=strides,
                padding=_PADDING,
                output_padding=strides - 1,
            )
        else:
            conv = _CONV[spatial_dims](
                in_channels, out_channels, kernel_size=_KERNEL, stride=strides, padding=_PADDING
            )
        self.add_module("conv", conv)
        if not conv_only:
            self.add_module(
                "adn",
                ADN(norm=norm, spatial_dims=spatial_dims, channels=out_channels, dropout=dropout),
            )


class ResidualUnit(nn.Module):
    """MONAI ``ResidualUnit``: ``subunits`` convolutions plus a (projected) identity.

    The residual is a 3x3 strided convolution when the unit downsamples, a 1x1 convolution
    when only the channel count changes, else the identity.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        *,
        strides: int,
        subunits: int,
        norm: str,
        dropout: float,
        last_conv_only: bool = False,
    ) -> None:
        super().__init__()
        self.conv = nn.Sequential()
        self.residual: nn.Module = nn.Identity()
        channels, stride = in_channels, strides
        subunits = max(1, subunits)
        for su in range(subunits):
            unit = Convolution(
                spatial_dims,
                channels,
                out_channels,
                strides=stride,
                norm=norm,
                dropout=dropout,
                conv_only=last_conv_only and su == subunits - 1,
            )
            self.conv.add_module(f"unit{su:d}", unit)
            channels, stride = out_channels, 1
        if strides != 1 or in_channels != out_channels:
            kernel, padding = (_KERNEL, _PADDING) if strides != 1 else (1, 0)
            self.residual = _CONV[spatial_dims](
                in_channels, out_channels, kernel, strides, padding, bias=True
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``conv(x) + residual(x)``, same spatial size divided by ``strides``."""
        res: torch.Tensor = self.residual(x)
        cx: torch.Tensor = self.conv(x)
        return cx + res


class SkipConnection(nn.Module):
    """MONAI ``SkipConnection`` (``mode="cat"``): ``cat([x, submodule(x)], dim=1)``."""

    def __init__(self, submodule: nn.Module) -> None:
        super().__init__()
        self.submodule = submodule

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Channels of ``x`` first, then those of ``submodule(x)``."""
        return torch.cat([x, self.submodule(x)], dim=1)


class ResidualUNet(nn.Module):
    """``monai.networks.nets.UNet(..., strides=(2,) * (len(channels) - 1))`` in plain torch.

    Each level: down path (a strided :class:`ResidualUnit`, or a :class:`Convolution` when
    ``num_res_units == 0``), a :class:`SkipConnection` around the levels below, and an up
    path (a transposed :class:`Convolution`, followed by a one-subunit :class:`ResidualUnit`
    when ``num_res_units > 0``). The top up path ends in a bare convolution (logits).

    Args:
        spatial_dims: 2 or 3.
        in_channels: Input channels.
        out_channels: Output channels (logits).
        channels: Channels per level, top level first (at least 2).
        num_res_units: Residual subunits per down path (0: plain convolutions).
        norm: ``"batch"`` or ``"instance"`` (learnable affine).
        dropout: Dropout probability after every normalisation.
    """

    def __init__(
        self,
        *,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        channels: Sequence[int],
        num_res_units: int = 0,
        norm: str = "instance",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims!r}")
        if len(channels) < 2:
            raise ValueError(f"channels needs at least 2 levels, got {tuple(channels)}")
        self.spatial_dims = spatial_dims
        self.num_res_units = num_res_units
        self.norm = norm
        self.dropout = float(dropout)
        self.model = self._block(in_channels, out_channels, tuple(channels), is_top=True)

    def _block(self, inc: int, outc: int, channels: tuple[int, ...], *, is_top: bool) -> nn.Module:
        # Built bottom-up as MONAI does (sub-block, then down, then up), so a seeded
        # initialisation draws the same numbers in the same order.
        c = channels[0]
        if len(channels) > 2:
            sub = self._block(c, c, channels[1:], is_top=False)
            upc = c * 2
        else:
            sub = self._down(c, channels[1], strides=1)
            upc = c + channels[1]
        down = self._down(inc, c, strides=2)
        up = self._up(upc, outc, is_top=is_top)
        return nn.Sequential(down, SkipConnection(sub), up)

    def _down(self, inc: int, outc: int, *, strides: int) -> nn.Module:
        if self.num_res_units > 0:
            return ResidualUnit(
                self.spatial_dims,
                inc,
                outc,
                strides=strides,
                subunits=self.num_res_units,
                norm=self.norm,
                dropout=self.dropout,
            )
        return Convolution(
            self.spatial_dims, inc, outc, strides=strides, norm=self.norm, dropout=self.dropout
        )

    def _up(self, inc: int, outc: int, *, is_top: bool) -> nn.Module:
        conv = Convolution(
            self.spatial_dims,
            inc,
            outc,
            strides=2,
            norm=self.norm,
            dropout=self.dropout,
            conv_only=is_top and self.num_res_units == 0,
            is_transposed=True,
        )
        if self.num_res_units == 0:
            return conv
        unit = ResidualUnit(
            self.spatial_dims,
            outc,
            outc,
            strides=1,
            subunits=1,
            norm=self.norm,
            dropout=self.dropout,
            last_conv_only=is_top,
        )
        return nn.Sequential(conv, unit)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Segment a batch.

        Args:
            x: ``(N, in_channels, *spatial)`` float tensor, 2 or 3 spatial axes, each a
                multiple of ``2 ** (len(channels) - 1)``.

        Returns:
            Logits ``(N, out_channels, *spatial)``.
        """
        logits: torch.Tensor = self.model(x)
        return logits


__all__ = ["ADN", "Convolution", "ResidualUNet", "ResidualUnit", "SkipConnection"]
