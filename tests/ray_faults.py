"""A fault for the Ray tests, installed in every Ray worker by ``worker_process_setup_hook``:
while the file named by ``$INBEDDER_TEST_CRASH_MARKER`` exists, the next embedding call in
any worker takes it (one rename: one worker wins) and kills its own process, as a crashed
node would."""

from __future__ import annotations

import os

MARKER_ENV = "INBEDDER_TEST_CRASH_MARKER"


def crash_once() -> None:
    from inbedder_retrieval.distributed import EmbedBatches

    real = EmbedBatches.__call__

    def call(self, batch):
        marker = os.environ[MARKER_ENV]
        try:
            os.rename(marker, marker + ".taken")
        except FileNotFoundError:
            return real(self, batch)
        os._exit(1)

    EmbedBatches.__call__ = call
