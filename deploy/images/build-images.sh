#!/usr/bin/env bash
# `make image`: the serving image (a Bento, then `bentoml containerize`) and the monitor image
# on top of it (monitor.Containerfile).
#
#   deploy/images/build-images.sh ENGINE SERVING_TAG MONITOR_TAG [BASE_IMAGE]
#
# ENGINE is docker or podman. BASE_IMAGE replaces bentofile.yaml's base (python:3.11-slim)
# for this build, e.g. the Debian-built shiftwatch-base:bookworm of `make base-image` where no
# registry can be reached; the Bento is otherwise the same. NO_CACHE=1 rebuilds every layer
# (make bench-images times that). Run from the project root, with bentoml on PATH and
# BENTOML_HOME holding the models (make image sees to both).
set -euo pipefail
engine=${1:?engine (docker or podman)}
serving=${2:?serving image tag}
monitor=${3:?monitor image tag}
base=${4:-}

bentofile=bentofile.yaml
if [ -n "$base" ]; then
  mkdir -p build
  bentofile=build/bentofile.image.yaml
  python - "$base" "$bentofile" <<'PY'
import sys

import yaml

base, out = sys.argv[1:]
config = yaml.safe_load(open("bentofile.yaml"))
config["docker"]["base_image"] = base
yaml.safe_dump(config, open(out, "w"), sort_keys=False)
PY
fi

bento=$(bentoml build -f "$bentofile" --output tag | tail -n 1)
bento=${bento#__tag__:}
echo "bento $bento"
# --network host: the build's downloads (uv, the locked wheels) go out as the host's do.
# TMPDIR under the working dir: containerize writes its build context to a temporary folder and
# refuses a Dockerfile template outside the working dir (BentoML's path check).
no_cache=()
[ "${NO_CACHE:-}" = 1 ] && no_cache=(--no-cache)
mkdir -p build/tmp
TMPDIR="$PWD/build/tmp" bentoml containerize "$bento" --backend "$engine" --opt network=host \
  ${no_cache:+--opt no-cache} --image-tag "$serving"
"$engine" build "${no_cache[@]}" --network host --build-arg "SERVING_IMAGE=$serving" \
  -f deploy/images/monitor.Containerfile -t "$monitor" deploy
for image in "$serving" "$monitor"; do
  echo "$image $("$engine" image inspect "$image" --format '{{.Size}}') bytes"
done
