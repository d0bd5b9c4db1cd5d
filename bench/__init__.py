"""The benchmark (``scripts/bench``): not tests. No module here is named ``test_*``, so pytest collects nothing."""
