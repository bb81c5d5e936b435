#!/usr/bin/env bash
# Installs the command-line tools some tests call, when they are missing:
#   pdftotext, pdftoppm (Debian's poppler-utils): the statements' PDFs are read back as text.
# Installing needs apt-get and root (CI runs as root). A tool that cannot be installed is left out
# with a warning, and its tests skip saying why; with BANK_REQUIRE_SERVICES=1 this fails instead
# (and those tests would fail too).
set -euo pipefail

missing=()
command -v pdftotext >/dev/null 2>&1 && command -v pdftoppm >/dev/null 2>&1 || missing+=(poppler-utils)

if ((${#missing[@]} == 0)); then
  exit 0
fi
echo "installing ${missing[*]} (for pdftotext and pdftoppm)" >&2
if command -v apt-get >/dev/null 2>&1 && [[ "$(id -u)" == 0 ]]; then
  export DEBIAN_FRONTEND=noninteractive
  if apt-get install -y -q "${missing[@]}" >&2 || { apt-get update -q >&2 && apt-get install -y -q "${missing[@]}" >&2; }; then
    exit 0
  fi
fi
message="cannot install ${missing[*]} (needs apt-get as root); the PDF text tests will skip"
if [[ "${BANK_REQUIRE_SERVICES:-0}" == 1 ]]; then
  echo "error: ${message/will skip/are required (BANK_REQUIRE_SERVICES=1)}" >&2
  exit 1
fi
echo "warning: ${message}" >&2
