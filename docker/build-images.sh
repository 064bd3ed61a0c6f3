#!/usr/bin/env bash
# Build renalmae's image targets with podman on a machine that reaches no image registry (CI's, a
# developer's): what `make images` runs. See docker/README.md.
#
#   docker/build-images.sh [TARGET...]          default: cuda mlflow (the targets that build offline)
#
# Each TARGET is tagged $RENALMAE_IMAGE:$RENALMAE_IMAGE_TAG-TARGET (defaults ghcr.io/renalmae/renalmae
# and dev, the names components/ runs). The base image is docker/base-image.sh's, made once. The
# machine's own pip sources (the file:// indexes and --find-links folders of `pip config list`, e.g.
# where torch's wheels lie) are mounted read-only into the build and handed to pip there. The `cpu`
# target needs the PyTorch CPU index, which is not reachable here. The image carries the checkout's commit
# (`git rev-parse HEAD`, with -dirty when tracked files differ) as build argument GIT_COMMIT.
set -euo pipefail
cd "$(dirname "$0")/.."

export CONTAINERS_CONF="${CONTAINERS_CONF:-$PWD/docker/podman/containers.conf}"
repository="${RENALMAE_IMAGE:-ghcr.io/renalmae/renalmae}"
tag="${RENALMAE_IMAGE_TAG:-dev}"
base_image="${RENALMAE_BASE_IMAGE:-localhost/renalmae-base:bookworm}"
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(cuda mlflow)

if ! podman image exists "$base_image"; then
    docker/base-image.sh "$base_image"
fi

# file:///x/simple index URLs and find-links folders from the machine's pip configuration
pip_config="$(python3 -m pip config list 2>/dev/null || true)"
config_value() { sed -n "s/^global\.$1='\(.*\)'$/\1/p" <<<"$pip_config" | head -n 1; }
index_urls=()
find_links=()
mounts=()
for url in $(config_value extra-index-url); do
    case "$url" in file://*) index_urls+=("$url"); mounts+=("${url#file://}") ;; esac
done
for folder in $(config_value find-links); do
    [ -d "$folder" ] && find_links+=("$folder") && mounts+=("$folder")
done
volume_args=()
for folder in "${mounts[@]}"; do
    # mount the package folder itself (the parent of an index's simple/, whose links point beside it)
    root="$(dirname "$folder")"
    [ "$(basename "$folder")" = simple ] || root="$folder"
    volume_args+=(--volume "$root:$root:ro")
done

git_commit="$(git rev-parse HEAD 2>/dev/null || echo unknown)"
if [ "$git_commit" != unknown ] && [ -n "$(git status --porcelain --untracked-files=no)" ]; then
    git_commit="$git_commit-dirty"
fi

for target in "${targets[@]}"; do
    podman build --format docker --file docker/Dockerfile --target "$target" \
        --build-arg PYTHON_IMAGE="$base_image" \
        --build-arg PIP_EXTRA_INDEX_URL="${index_urls[*]}" \
        --build-arg PIP_FIND_LINKS="${find_links[*]}" \
        --build-arg GIT_COMMIT="$git_commit" \
        "${volume_args[@]}" \
        --tag "$repository:$tag-$target" .
done
