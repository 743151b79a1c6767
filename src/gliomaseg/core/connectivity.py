"""Connected components with full connectivity (26 neighbours in 3D, 8 in 2D).

The one definition behind postprocessing (small components dropped), the summary's and the
shape features' component counts. scipy.ndimage is imported here, not by ``core.geometry``:
``segment`` reads its first case before scipy and torch are imported (cold start).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage


def connected_components(mask: NDArray[np.bool_]) -> tuple[NDArray[np.int32], int]:
    """Labels (0 background, 1..n) and count of the fully connected components of ``mask``.

    Pass the mask cut to its :func:`~gliomaseg.core.geometry.bounding_box` when it is a
    tumour in a head: the components are the same, and labelling the box instead of the
    whole volume is several times faster.
    """
    mask = np.asarray(mask, dtype=bool)
    labels, n = ndimage.label(mask, structure=np.ones((3,) * mask.ndim, dtype=bool))
    return labels, int(n)
