"""The stop component fails with the reason it is given."""

import pytest

from components.stop.component import stop


def test_stop_fails_with_its_reason():
    with pytest.raises(RuntimeError, match="data validation failed"):
        stop.python_func(reason="data validation failed: see the validate task's report", comparison=None)
