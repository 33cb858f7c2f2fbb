#!/usr/bin/env python3
"""SageMaker training entrypoint (`python /opt/ml/code/train.py`): the code lives in the yoloops_train package.

Python puts this file's folder first on sys.path, so the package next to it is found in the image
(/opt/ml/code) and in a checkout (training_container/) alike.
"""

import sys

from yoloops_train.job import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
