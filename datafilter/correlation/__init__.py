"""Perplexity-correlation data selection (Thrush et al. 2024, "Improving Pretraining Data Using
Perplexity Correlations").

Given bits-per-byte ``X`` (N models x D domains) and the models' benchmark error ``y`` (N), an
estimator ranks the domains by how strongly a low loss on them goes with a low error; a projection
turns the ranking into a sampling distribution over domains under per-domain caps ``tau``.

Modules: ``estimators`` and ``projections`` (the maths, equal to the ``perplexity-correlations``
package), ``tables`` (bpb and benchmark tables), ``domains`` (domain of a row), ``sample``
(documents per domain), ``aggregate`` (DuckDB: bpb and tokens per domain), ``weights`` (domain
weights table), ``distill`` (optional fastText classifier), ``stages`` (what the API calls).
"""

from datafilter.correlation.estimators import ESTIMATORS, estimate
from datafilter.correlation.projections import PROJECTIONS, project

__all__ = ["ESTIMATORS", "PROJECTIONS", "estimate", "project"]
