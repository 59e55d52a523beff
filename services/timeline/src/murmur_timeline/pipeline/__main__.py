"""``python -m murmur_timeline.pipeline``: run the feed pipeline until SIGTERM."""

from __future__ import annotations

from murmur_core import lifecycle
from murmur_timeline.pipeline.app import Pipeline
from murmur_timeline.pipeline.settings import PipelineSettings


def main() -> None:
    lifecycle.serve("pipeline", "murmur-timeline", PipelineSettings, Pipeline.start)


if __name__ == "__main__":
    main()
