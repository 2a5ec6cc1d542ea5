#!/usr/bin/env bash
# Unpacks Debian sid's CPython 3.14 and 3.15 (and sid's glibc, which they need) under
# target/debian-pythons, with wrappers py3.14 / py3.15 that run them through sid's loader.
# Nothing is installed system-wide. Best effort: if it fails, the 3.14/3.15 tests are skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
dest="$PWD/target/debian-pythons"
[ -x "$dest/py3.15" ] && [ -x "$dest/py3.14" ] && exit 0
work="$dest/apt"

# First Debian archive URI (not -security, -updates or ports) named in deb822 .sources files or a
# one-line sources.list.
debian_mirror() {
    {
        cat /etc/apt/sources.list.d/*.sources 2>/dev/null | sed -n 's/^URIs:[[:space:]]*//p' | tr ' ' '\n'
        cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null \
            | sed -n 's/^deb[[:space:]]\+\(\[[^]]*\][[:space:]]\+\)\?\([^[:space:]]\+\).*/\2/p'
    } | grep -E '^(https?|file):' | grep -v -- '-security' | grep -E '/debian/?$' | head -n1 || true
}
mkdir -p "$work/lists/partial" "$work/cache/archives/partial" "$work/debs" "$dest/root"
# The Debian mirror is the one this machine's apt already uses; only the suite changes to sid.
mirror=$(debian_mirror)
[ -n "$mirror" ] || { echo "no Debian mirror in this machine's apt configuration" >&2; exit 1; }
echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror sid main" > "$work/sid.list"
cat > "$work/apt.conf" <<CONF
Dir::Etc::SourceList "$work/sid.list";
Dir::Etc::SourceParts "/dev/null";
Dir::State::Lists "$work/lists";
Dir::Cache "$work/cache";
CONF
export APT_CONFIG="$work/apt.conf"
apt-get update -qq
(cd "$work/debs" && apt-get download -qq python3.15-minimal libpython3.15-minimal libpython3.15-stdlib \
    python3.14-minimal libpython3.14-minimal libpython3.14-stdlib libc6 2>/dev/null)
for deb in "$work"/debs/*.deb; do dpkg-deb -x "$deb" "$dest/root"; done
libc="$dest/root/usr/lib/x86_64-linux-gnu"
for v in 3.14 3.15; do
    cat > "$dest/py$v" <<WRAP
#!/bin/sh
PYTHONHOME="$dest/root/usr" exec "$libc/ld-linux-x86-64.so.2" --library-path "$libc" "$dest/root/usr/bin/python$v" "\$@"
WRAP
    chmod +x "$dest/py$v"
    "$dest/py$v" -c "import sys; print('Debian sid Python', sys.version.split()[0])"
done
