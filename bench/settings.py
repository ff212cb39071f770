"""Thor's settings with the benchmark URLconf, which adds the bare baseline view. Benchmarks only."""

from thor.settings import *  # noqa: F403

ROOT_URLCONF = "bench.urls"
