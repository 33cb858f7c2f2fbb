#!/usr/bin/env python3
"""SageMaker training entrypoint (`python /opt/ml/code/train.py`): the code lives in the yoloops_train package.

Python puts this file's folder first on sys.path, so the package next to it is found in the image
(/opt/ml/code) and in a checkout (training_container/) alike.
"""

import multiprocessing
import os
import sys

from yoloops_train.job import main


def _exit(code: int) -> None:
    """End the job now that its outputs and failure line are written.

    A plain interpreter exit joins leftover children (data-loader workers) and runs atexit hooks; a worker
    forked while another thread held a lock (OpenVINO's and torch's thread pools) can sit on that lock
    forever, and SageMaker would bill the job until MaxRuntime. So: stop the children, flush, leave.
    """
    for child in multiprocessing.active_children():
        child.kill()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    _exit(main(sys.argv[1:]))
