"""A one-dimensional variational Bayesian Gaussian mixture with sample weights.

This is the model that rdt's ``ClusterBasedNormalizer`` fits for ctgan
(``sklearn.mixture.BayesianGaussianMixture`` with ``covariance_type="full"``,
``weight_concentration_prior_type="dirichlet_process"``,
``weight_concentration_prior=0.001`` and default priors), written out in closed
form for one feature and extended with sample weights.

Why: sklearn's estimator has no ``sample_weight`` and spends most of its time in
generic n-dimensional code. A continuous column usually holds far fewer distinct
values than rows (ages, counts, money), and the mixture's sufficient statistics
are sums over rows, so running the same updates on ``(unique value, count)``
pairs gives the same fit on a fraction of the data. The initial responsibilities
come from sklearn's ``KMeans`` run on the raw values exactly as sklearn does it
(same ``random_state``), so on the same values the result matches sklearn's up to
floating-point summation order.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
from scipy.special import betaln, digamma, gammaln

_REG_COVAR = 1e-6
_TOL = 1e-3
_MAX_ITER = 100
_WEIGHT_CONCENTRATION_PRIOR = 1e-3
_MEAN_PRECISION_PRIOR = 1.0
_DOF_PRIOR = 1.0  # n_features
_LOG_2PI = math.log(2.0 * math.pi)
_EPS10 = 10.0 * np.finfo(np.float64).eps


@dataclass(frozen=True)
class MixtureFit:
    """The fitted mixture, reduced to what transform and inverse need.

    ``log_offset[k] - 0.5 * ((x - means[k]) * precision_chol[k]) ** 2`` is the
    unnormalised log posterior of component ``k`` for value ``x`` (the quantity
    sklearn's ``predict_proba`` normalises).
    """

    means: np.ndarray
    stds: np.ndarray
    precision_chol: np.ndarray
    log_offset: np.ndarray
    weights: np.ndarray
    n_iter: int
    converged: bool


def fit_bgm(values: np.ndarray, n_components: int, random_state: int = 42) -> MixtureFit:
    """Fit the mixture to 1-D ``values`` (float64, no NaN, at least 2 values)."""
    from sklearn.cluster import KMeans

    x_raw = np.ascontiguousarray(values, dtype=np.float64).reshape(-1, 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        labels = (
            KMeans(n_clusters=n_components, n_init=1, random_state=np.random.RandomState(random_state))
            .fit(x_raw)
            .labels_
        )
    x, inverse, counts = np.unique(x_raw[:, 0], return_inverse=True, return_counts=True)
    unique_labels = np.empty(x.shape[0], dtype=np.int64)
    unique_labels[inverse.reshape(-1)] = labels  # equal values always share a k-means label
    w = counts.astype(np.float64)
    resp = np.zeros((x.shape[0], n_components))
    resp[np.arange(x.shape[0]), unique_labels] = 1.0
    return _variational_em(x, w, resp, n_components)


# Stays whole (91 lines): it mirrors sklearn BayesianGaussianMixture.fit step by step (m-step, e-step, bound).
def _variational_em(x: np.ndarray, w: np.ndarray, resp: np.ndarray, k: int) -> MixtureFit:
    total = w.sum()
    mean_prior = float((w * x).sum() / total)
    covariance_prior = float((w * (x - mean_prior) ** 2).sum() / (total - 1.0))  # np.cov, ddof=1

    wx = w * x

    def m_step(r: np.ndarray) -> tuple[np.ndarray, ...]:
        nk = w @ r + _EPS10
        xk = (wx @ r) / nk
        d = x[:, None] - xk
        d *= d
        d *= r
        sk = (w @ d) / nk + _REG_COVAR
        conc_a = 1.0 + nk
        conc_b = _WEIGHT_CONCENTRATION_PRIOR + np.hstack((np.cumsum(nk[::-1])[-2::-1], 0.0))
        mean_precision = _MEAN_PRECISION_PRIOR + nk
        means = (_MEAN_PRECISION_PRIOR * mean_prior + nk * xk) / mean_precision
        dof = _DOF_PRIOR + nk
        diff = xk - mean_prior
        cov = (covariance_prior + nk * sk + nk * _MEAN_PRECISION_PRIOR / mean_precision * diff * diff) / dof
        return conc_a, conc_b, mean_precision, means, dof, cov

    def log_offset(params: tuple[np.ndarray, ...]) -> tuple[np.ndarray, np.ndarray]:
        conc_a, conc_b, mean_precision, _means, dof, cov = params
        precision_chol = 1.0 / np.sqrt(cov)
        digamma_sum = digamma(conc_a + conc_b)
        log_weights = digamma(conc_a) - digamma_sum + np.hstack((0.0, np.cumsum(digamma(conc_b) - digamma_sum)[:-1]))
        log_lambda = math.log(2.0) + digamma(0.5 * dof)
        offset = (
            log_weights
            - 0.5 * _LOG_2PI
            + np.log(precision_chol)
            - 0.5 * np.log(dof)
            + 0.5 * (log_lambda - 1.0 / mean_precision)
        )
        return offset, precision_chol

    def e_step(params: tuple[np.ndarray, ...]) -> tuple[np.ndarray, np.ndarray]:
        """Return (log responsibilities, responsibilities)."""
        offset, precision_chol = log_offset(params)
        means = params[3]
        log_resp = x[:, None] * precision_chol
        log_resp -= means * precision_chol
        log_resp *= log_resp
        log_resp *= -0.5
        log_resp += offset
        top = log_resp.max(axis=1, keepdims=True)
        log_resp -= top
        resp = np.exp(log_resp)
        log_norm = np.log(resp.sum(axis=1, keepdims=True))
        log_resp -= log_norm
        resp /= np.exp(log_norm)
        return log_resp, resp

    def lower_bound(params: tuple[np.ndarray, ...], log_resp: np.ndarray, resp: np.ndarray) -> float:
        conc_a, conc_b, mean_precision, _means, dof, cov = params
        log_det_chol = np.log(1.0 / np.sqrt(cov)) - 0.5 * np.log(dof)
        log_wishart = -(dof * log_det_chol + dof * 0.5 * math.log(2.0) + gammaln(0.5 * dof))
        entropy = float(w @ (resp * log_resp).sum(axis=1))
        return float(-entropy - log_wishart.sum() + betaln(conc_a, conc_b).sum() - 0.5 * np.log(mean_precision).sum())

    params = m_step(resp)
    bound = -np.inf
    converged = False
    n_iter = 0
    with np.errstate(under="ignore"):
        while n_iter < _MAX_ITER:
            n_iter += 1
            previous = bound
            log_resp, resp = e_step(params)
            params = m_step(resp)
            bound = lower_bound(params, log_resp, resp)
            if abs(bound - previous) < _TOL:
                converged = True
                break

    conc_a, conc_b, _mean_precision, means, _dof, cov = params
    total_conc = conc_a + conc_b
    weights = conc_a / total_conc * np.hstack((1.0, np.cumprod(conc_b / total_conc)[:-1]))
    weights = weights / weights.sum()
    offset, precision_chol = log_offset(params)
    return MixtureFit(
        means=means,
        stds=np.sqrt(cov),
        precision_chol=precision_chol,
        log_offset=offset,
        weights=weights,
        n_iter=n_iter,
        converged=converged,
    )
