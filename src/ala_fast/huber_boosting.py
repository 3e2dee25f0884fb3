"""scikit-learn's GradientBoostingRegressor with a faster Huber leaf update, same trees.

Training only (needs scikit-learn). With ``loss="huber"`` every leaf of every tree gets its
value from ``HuberLoss.fit_intercept_only`` on the leaf's residuals: a weighted median plus
the mean clipped deviation from it. scikit-learn computes that median with its general
``_weighted_percentile`` (array-API namespaces, 2-D inputs, NaN handling, several ranks), whose
overhead on leaves of a few dozen samples was about half of our training time.

``HuberLeafGBR`` only swaps in :class:`FastHuberLoss`, whose ``fit_intercept_only`` does the
same arithmetic for the one case the booster produces (1-D residuals without NaN, weights
with a positive sum): the same sort (NumPy's default argsort, as scikit-learn asks for with
``stable=False``), the same cumulative weights, the same ``searchsorted`` of half the total and
the same ``np.average``. Anything else goes to scikit-learn's own code. The result is the same
model bit for bit; tests/test_model.py compares the trees with the stock estimator's, and the
shipped bundle's reproduction test rebuilds it through this class.

It relies on two private hooks of scikit-learn (``GradientBoostingRegressor._get_loss`` and
``sklearn._loss.loss.HuberLoss``), checked with scikit-learn 1.9 (the version the shipped
bundle records); if a release drops the first, the override is never called and training is
only slower, and if one changes the leaf arithmetic, the equality tests fail. skl2onnx converts the
subclass with the GradientBoostingRegressor converter (registered by :func:`register_onnx`).
"""

from __future__ import annotations

import numpy as np
from sklearn._loss.loss import HuberLoss
from sklearn.ensemble import GradientBoostingRegressor


class FastHuberLoss(HuberLoss):
    def fit_intercept_only(self, y_true, sample_weight=None):
        y = y_true
        if (sample_weight is None or not isinstance(y, np.ndarray) or y.ndim != 1
                or y.size == 0 or np.isnan(y).any()):
            return super().fit_intercept_only(y_true, sample_weight)
        w = np.asarray(sample_weight, dtype=y.dtype)
        order = np.argsort(y)
        cdf = np.cumsum(w[order])
        total = cdf[-1]
        if not total > 0:  # all weights zero: scikit-learn's NaN path
            return super().fit_intercept_only(y_true, sample_weight)
        rank = np.float64(50) / 100 * total  # as _weighted_percentile scales the rank
        i = min(int(np.searchsorted(cdf, rank)), y.size - 1)
        median = y[order[i]]
        diff = y - median
        term = np.sign(diff) * np.minimum(self.closs.delta, np.abs(diff))
        return median + np.average(term, weights=sample_weight)


class HuberLeafGBR(GradientBoostingRegressor):
    """GradientBoostingRegressor whose Huber loss updates leaves through FastHuberLoss."""

    def _get_loss(self, sample_weight):
        if self.loss == "huber":
            return FastHuberLoss(sample_weight=sample_weight, quantile=self.alpha)
        return super()._get_loss(sample_weight)


_registered = False


def register_onnx() -> None:
    """Let skl2onnx convert HuberLeafGBR as the GradientBoostingRegressor it is."""
    global _registered
    if _registered:
        return
    from skl2onnx import update_registered_converter
    from skl2onnx.common.shape_calculator import calculate_linear_regressor_output_shapes
    from skl2onnx.operator_converters.gradient_boosting import convert_sklearn_gradient_boosting_regressor

    update_registered_converter(HuberLeafGBR, "AlaFastHuberLeafGBR",
                                calculate_linear_regressor_output_shapes,
                                convert_sklearn_gradient_boosting_regressor)
    _registered = True
