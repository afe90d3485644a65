"""Fuzzing of the public ops with hypothesis (cases in tests/_fuzz_cases.py).

Each op family's case runs in a child interpreter (run_isolated): a crash fails that test
instead of killing the suite, and the child's stderr carries hypothesis' falsifying
example. The budget is small (FUZZ_EXAMPLES, default 30 examples per case, derandomised)
so that the module stays within ~30 s; raise it to fuzz harder.
"""

import pytest

pytest.importorskip("hypothesis", reason="fuzzing needs hypothesis")

from _isolated import run_isolated  # noqa: E402

CASES = ["fuzz_box_ops", "fuzz_nms", "fuzz_soft_nms_parameters", "fuzz_integral_image", "fuzz_roi",
         "fuzz_felzenszwalb", "fuzz_selective_search", "fuzz_haar_features", "fuzz_ism"]


@pytest.mark.parametrize("case", CASES)
def test_fuzz(case):
    run_isolated(f"import _fuzz_cases\n_fuzz_cases.{case}()", timeout=300)
