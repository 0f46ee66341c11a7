"""Probes: measure how separable labelled embeddings are.

Each probe is a scikit-learn-style estimator (:class:`embedforensics.probes.base.Probe`)
whose ``fit(X, y)`` leaves a JSON-ready :class:`~embedforensics.probes.base.ProbeResult`
in ``result_``. The built-in probes live in their own modules (``pca``, ``lda``,
``cluster``, ``linear``) and are found through :data:`embedforensics.registry.PROBES`;
nothing is imported here so that listing probes stays cheap.
"""
