#!/usr/bin/env bash
# make test's "meta" suite: the release metadata is well formed and agrees
# with itself.  META.json parses as JSON and has what PGXN's meta spec 1.0.0
# requires; the version in META.json (and its provides), the Makefile's
# EXTVERSION, the control file's default_version and debian/changelog are one
# version; every file META.json names exists; LICENSE is the PostgreSQL
# License that META.json and debian/copyright name; CHANGELOG.md has an entry
# for the version.  Prints what is wrong and exits 1, or one line and 0.
set -euo pipefail
SRC_DIR=$(cd "$(dirname "$0")/.." && pwd)
cd "$SRC_DIR"

extversion=$(sed -nE 's/^EXTVERSION *= *([^ ]+)$/\1/p' Makefile)
default_version=$(sed -nE "s/^default_version *= *'([^']+)'.*/\1/p" outbox_saga.control)
deb_version=$(dpkg-parsechangelog -l debian/changelog -S Version)

EXTVERSION=$extversion DEFAULT_VERSION=$default_version DEB_VERSION=$deb_version \
python3 - <<'PY'
import json, os, re, sys

problems = []
def bad(msg):
    problems.append(msg)

try:
    with open("META.json", encoding="utf-8") as f:
        meta = json.load(f)
except (OSError, ValueError) as e:
    print(f"check_meta: META.json is not well-formed JSON: {e}")
    sys.exit(1)

semver = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(-[0-9A-Za-z-]+)?$")
for key in ("name", "abstract", "version", "maintainer", "license", "provides", "meta-spec"):
    if key not in meta:
        bad(f"META.json lacks the required key {key!r}")
if meta.get("meta-spec", {}).get("version") != "1.0.0":
    bad("META.json: meta-spec.version must be 1.0.0")
if meta.get("name") != "outbox_saga":
    bad("META.json: name must be outbox_saga")
version = meta.get("version", "")
if not semver.match(version):
    bad(f"META.json: version {version!r} is not a semantic version")
if meta.get("release_status", "stable") not in ("stable", "testing", "unstable"):
    bad("META.json: release_status must be stable, testing or unstable")
if meta.get("license") != "postgresql":
    bad("META.json: license must be postgresql (the LICENSE file)")

ext = meta.get("provides", {}).get("outbox_saga")
if not ext:
    bad("META.json: provides lacks outbox_saga")
else:
    if ext.get("version") != version:
        bad("META.json: provides.outbox_saga.version differs from version")
    for key in ("file", "docfile"):
        if key in ext and not os.path.isfile(ext[key]):
            bad(f"META.json: provides.outbox_saga.{key} names {ext[key]!r}, which does not exist")
    if "file" not in ext:
        bad("META.json: provides.outbox_saga lacks file")

pg = meta.get("prereqs", {}).get("runtime", {}).get("requires", {}).get("PostgreSQL")
if not pg or not semver.match(pg):
    bad("META.json: prereqs.runtime.requires.PostgreSQL must be a version")
for key, url in meta.get("resources", {}).items():
    url = url.get("web", url.get("url")) if isinstance(url, dict) else url
    if not isinstance(url, str) or not re.match(r"^https?://", url):
        bad(f"META.json: resources.{key} is not a URL")

for name, value in (("the Makefile's EXTVERSION", os.environ["EXTVERSION"]),
                    ("outbox_saga.control's default_version", os.environ["DEFAULT_VERSION"]),
                    ("debian/changelog", os.environ["DEB_VERSION"].split("-")[0])):
    if value != version:
        bad(f"{name} is {value!r}, META.json says {version!r}")

with open("LICENSE", encoding="utf-8") as f:
    lic = f.read()
if not lic.startswith("PostgreSQL License") or "The outbox_saga authors" not in lic:
    bad("LICENSE is not the PostgreSQL License of the outbox_saga authors")
with open("debian/copyright", encoding="utf-8") as f:
    if "License: PostgreSQL" not in f.read():
        bad("debian/copyright does not name the PostgreSQL License")

with open("CHANGELOG.md", encoding="utf-8") as f:
    changelog = f.read()
if not re.search(r"^## (Unreleased \(%s\)|%s\b)" % (re.escape(version), re.escape(version)),
                 changelog, re.M):
    bad(f"CHANGELOG.md has no entry for {version}")

for p in problems:
    print("check_meta:", p)
if problems:
    sys.exit(1)
print(f"check_meta: META.json, the control file, debian/changelog and CHANGELOG.md agree on {version}")
PY
