"""The version checks (`lakehouse.versions.checks`) as blocking asset checks of the dataset
asset: their specs, and each result in Dagster's terms."""

from __future__ import annotations

import dagster as dg

from lakehouse.runs import DATASET_ASSET_KEY
from lakehouse.versions.checks import CHECKS, CheckResult

check_specs = [
    dg.AssetCheckSpec(name, asset=DATASET_ASSET_KEY, blocking=True, description=description)
    for name, description in CHECKS.items()
]


def to_dagster(result: CheckResult) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        check_name=result.name,
        asset_key=DATASET_ASSET_KEY,
        passed=result.passed,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata=dict(result.metadata),  # type: ignore[arg-type]
    )


def all_to_dagster(results: list[CheckResult]) -> list[dg.AssetCheckResult]:
    return [to_dagster(r) for r in results]
