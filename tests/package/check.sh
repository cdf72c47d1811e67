#!/bin/bash
# The Debian package tier: builds strait_*.deb from a copy of the tree with
# dpkg-buildpackage (debhelper + meson, tests off), then checks it:
#
#   build     dpkg-buildpackage -b -us -uc succeeds
#   lintian   lintian reports no error (warnings are printed, not failed)
#   tree      dpkg -x gives the expected files (programs, man pages,
#             completion, conffiles, units, rules, dashboard), the files
#             under /etc are conffiles, and the unpacked programs run
#   units     systemd-analyze verify accepts strait.service and
#             strait-hugepages.service from the unpacked tree
#
# Prints "package: N passed, N failed" as its last line; exit 0 only when
# nothing failed. Usage: tests/package/check.sh [OUTDIR] (default: a
# temporary directory, removed afterwards). PACKAGE_JOBS (default 2) is
# the build's parallelism.
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
OUT=${1:-}
KEEP=1
if [[ -z $OUT ]]; then OUT=$(mktemp -d /tmp/strait-package.XXXXXX); KEEP=0; fi
mkdir -p "$OUT"
cleanup() { ((KEEP)) || rm -rf "$OUT"; }
trap cleanup EXIT

passed=0 failed=0
pass() { echo "PASS $1"; passed=$((passed + 1)); }
fail() { echo "FAIL $1${2:+: $2}"; failed=$((failed + 1)); }
finish() { echo "package: $passed passed, $failed failed"; ((failed == 0)); exit $?; }

# A copy of the tree as git sees it (tracked and new files, no build dirs).
src=$OUT/strait
mkdir -p "$src"
(cd "$ROOT" && git ls-files -co --exclude-standard -z | tar --null -T - -cf -) | tar -xf - -C "$src"

t0=$(date +%s)
if (cd "$src" && DEB_BUILD_OPTIONS="parallel=${PACKAGE_JOBS:-2} nocheck" \
      dpkg-buildpackage -b -us -uc) >"$OUT/build.log" 2>&1; then
  pass "build: dpkg-buildpackage -b -us -uc ($(( $(date +%s) - t0 )) s)"
else
  tail -40 "$OUT/build.log"
  fail "build" "dpkg-buildpackage failed (log above)"
  finish
fi
deb=$(ls "$OUT"/strait_*_amd64.deb 2>/dev/null | head -1)
[[ -n $deb ]] || { fail "build" "no strait_*_amd64.deb in $OUT"; finish; }
echo "package: $(basename "$deb"), $(stat -c %s "$deb") bytes"

# lintian: errors fail, warnings are shown.
lintian --tag-display-limit 0 "$deb" >"$OUT/lintian.log" 2>&1
cat "$OUT/lintian.log"
if grep -q '^E: ' "$OUT/lintian.log"; then
  fail "lintian" "$(grep -c '^E: ' "$OUT/lintian.log") error(s)"
else
  pass "lintian: no errors ($(grep -c '^W: ' "$OUT/lintian.log") warnings)"
fi

root=$OUT/root
dpkg -x "$deb" "$root"
missing=()
for f in usr/sbin/straitd usr/bin/lbctl \
         usr/share/man/man8/straitd.8.gz usr/share/man/man8/lbctl.8.gz \
         usr/share/bash-completion/completions/lbctl \
         etc/strait/strait.toml etc/default/strait \
         lib/systemd/system/strait.service lib/systemd/system/strait-hugepages.service \
         usr/lib/strait/strait-hugepages \
         usr/share/strait/prometheus/alerts.yml usr/share/strait/grafana/strait-dashboard.json \
         usr/share/doc/strait/copyright; do
  [[ -e $root/$f ]] || missing+=("$f")
done
if ((${#missing[@]})); then fail "tree" "missing: ${missing[*]}"; else pass "tree: dpkg -x has every expected file"; fi

ctl=$OUT/control
dpkg-deb -e "$deb" "$ctl"
if grep -qx /etc/strait/strait.toml "$ctl/conffiles" && grep -qx /etc/default/strait "$ctl/conffiles"; then
  pass "conffiles: /etc/strait/strait.toml and /etc/default/strait"
else
  fail "conffiles" "$(cat "$ctl/conffiles" 2>/dev/null)"
fi
if [[ -x $root/usr/lib/strait/strait-hugepages ]] && "$root/usr/sbin/straitd" --help >/dev/null &&
   "$root/usr/bin/lbctl" --help >/dev/null &&
   "$root/usr/sbin/straitd" --config "$root/etc/strait/strait.toml" --check-config --force >/dev/null; then
  pass "programs: straitd and lbctl from the package run; the packaged strait.toml passes --check-config"
else
  fail "programs" "straitd/lbctl --help or --check-config of the packaged config failed"
fi
if bash -c "source /usr/share/bash-completion/bash_completion 2>/dev/null; source '$root/usr/share/bash-completion/completions/lbctl' && complete -p lbctl" >/dev/null 2>&1; then
  pass "completion: the lbctl completion loads in bash"
else
  fail "completion" "sourcing the lbctl completion failed"
fi

# systemd-analyze verify: the units as packaged, with their programs
# pointed at the unpacked tree (the package is not installed here), checked
# against this host's systemd (targets, /bin/kill). --man=no: the manual
# pages named in Documentation= are the package's, not installed either.
units=$OUT/units
mkdir -p "$units"
for u in strait.service strait-hugepages.service; do
  sed -e "s#/usr/sbin/straitd#$root/usr/sbin/straitd#g" -e "s#/usr/lib/strait/#$root/usr/lib/strait/#g" \
    "$root/lib/systemd/system/$u" >"$units/$u"
done
# It exits 0 on unknown keys and bad values (it only warns), so any
# output counts as a failure too.
out=$(systemd-analyze verify --man=no "$units/strait.service" "$units/strait-hugepages.service" 2>&1)
rc=$?
if ((rc == 0)) && [[ -z $out ]]; then
  pass "units: systemd-analyze verify accepts strait.service and strait-hugepages.service without a warning"
else
  echo "$out"
  fail "units" "systemd-analyze verify: exit $rc, $(wc -l <<<"$out") line(s) of complaints"
fi
finish
