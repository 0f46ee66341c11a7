"""A complete third-party comparator in one file: agreement with the reference majority.

Registered only inside tests (tests/test_study_spine.py) to show that a new comparator is
this file plus one registry line:
``COMPARATORS.add("majority_agreement", "<module>:MajorityAgreement")``.
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from embedforensics.results import AnalysisResult, Metric
from embedforensics.study.analysis import Comparator, Outcome


class MajorityAgreementParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    min_reference: int = Field(3, ge=2, description="Refuse smaller reference ensembles.")


class MajorityAgreement(Comparator):
    """Share of test points where a candidate predicts what the reference majority does,
    against each reference model's agreement with the majority of the others."""

    name = "majority_agreement"
    Params = MajorityAgreementParams

    def run(self, inputs) -> Outcome:
        ref = np.stack([s.logits.argmax(1) for s in inputs.reference])
        M, n = ref.shape
        if M < self.params.min_reference:
            raise ValueError(f"needs at least {self.params.min_reference} reference models")

        def majority(preds: np.ndarray) -> np.ndarray:
            return np.array([np.bincount(col).argmax() for col in preds.T])

        null = [float(np.mean(ref[i] == majority(np.delete(ref, i, 0)))) for i in range(M)]
        results = []
        for group, scored in inputs.candidates.items():
            values = [float(np.mean(s.logits.argmax(1) == majority(ref))) for s in scored]
            value = float(np.median(values))
            rank_p = (1 + sum(v <= value for v in null)) / (M + 1)
            results.append(AnalysisResult(
                probe=f"{self.name}-{group}",
                summary=(f"{group}: agreement with the reference majority {value:.3f} vs "
                         f"{np.median(null):.3f} among reference seeds (rank p {rank_p:.2f})."),
                metrics={
                    "agreement": Metric(value=value, n=n, range=(min(values), max(values)),
                                        method=f"median over {len(values)} candidates",
                                        description="share of test points predicted as the "
                                                    "reference majority does"),
                    "rank_p": Metric(value=rank_p, n=M, method="leave-one-out rank",
                                     description="rank of the candidate among reference "
                                                 "seeds' leave-one-out agreements")}))
        return Outcome(results, provenance={"majority_agreement": {"reference_loo": null}})
