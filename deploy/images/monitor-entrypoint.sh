#!/bin/sh
# The monitor image's entrypoint. The monitor reads each model's reference window from the
# BentoML model store; the Bento's models/ is one, linked into BENTOML_HOME, which must be
# writable (BentoML creates folders in its home: a tmpfs or emptyDir under a read-only root).
set -e
mkdir -p "$BENTOML_HOME"
ln -sfn "$BENTO_PATH/models" "$BENTOML_HOME/models"
exec python -m monitoring "$@"
