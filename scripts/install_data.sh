#!/usr/bin/env bash
# Install the Fashion-MNIST files (Debian package dataset-fashion-mnist) that the
# "fashion_mnist" dataset reads at run time. Idempotent; needs no root:
#   1. files already under /usr/share/datasets/fashion-mnist/ (or under .data/): done;
#   2. as root with apt-get: apt-get install -y dataset-fashion-mnist;
#   3. otherwise: apt-get download the .deb into a temporary directory and unpack it
#      with dpkg-deb -x into .data/ at the repository root (ignored by git), so the
#      files land in .data/usr/share/datasets/fashion-mnist/.
set -euo pipefail
cd "$(dirname "$0")/.."
PACKAGE=dataset-fashion-mnist
SYSTEM_DIR=/usr/share/datasets/fashion-mnist
LOCAL_DIR=.data/usr/share/datasets/fashion-mnist
FILE=train-images-idx3-ubyte.gz

if [ -f "$SYSTEM_DIR/$FILE" ]; then
  echo "Fashion-MNIST is installed: $SYSTEM_DIR"
  exit 0
fi
if [ -f "$LOCAL_DIR/$FILE" ]; then
  echo "Fashion-MNIST is installed: $PWD/$LOCAL_DIR"
  exit 0
fi

if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing $PACKAGE with apt-get"
  export DEBIAN_FRONTEND=noninteractive
  if ! apt-get install -y "$PACKAGE"; then
    apt-get update
    apt-get install -y "$PACKAGE"
  fi
  echo "Fashion-MNIST is installed: $SYSTEM_DIR"
  exit 0
fi

for tool in apt-get dpkg-deb; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "error: $tool is needed to install $PACKAGE without root; alternatively put the four" >&2
    echo "files (train-/t10k-images-idx3-ubyte.gz, train-/t10k-labels-idx1-ubyte.gz) in" >&2
    echo "\$SMOOTHCERT_DATA_DIR/fashion-mnist/" >&2
    exit 1
  fi
done

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "downloading $PACKAGE with apt-get download (no root)"
if ! (cd "$tmp" && apt-get download "$PACKAGE"); then
  echo "error: apt-get download $PACKAGE failed; if apt cannot locate the package, its lists" >&2
  echo "are empty: run 'apt-get update' as root once, or install as root" >&2
  exit 1
fi
deb=$(ls "$tmp"/"$PACKAGE"_*.deb)
mkdir -p .data
dpkg-deb -x "$deb" .data/
if [ ! -f "$LOCAL_DIR/$FILE" ]; then
  echo "error: $deb did not contain $SYSTEM_DIR/$FILE" >&2
  exit 1
fi
echo "Fashion-MNIST is installed: $PWD/$LOCAL_DIR"
