#!/usr/bin/env bash
# Shenron as a new user runs it, beside the gateways: built into a wheel, installed in a fresh venv, and
# measured by ../shared/bench/peers.py in one run with TensorZero and NeMo Switchyard, first with the access
# log on (to a file; the ledger and /metrics are on by default), then with it off (as peers.py configures
# every gateway). A benchmark, not a test: it prints peers.py's tables and judges nothing.
#
#   bench/wheel_peers.sh ANCHORS [peers.py options, e.g. --n 1500 --dur 4]
#
# ANCHORS: a folder with a venv of the Rust gateways (peers.py --anchors), e.g. made by
#   python3 -m venv ANCHORS/venv && ANCHORS/venv/bin/pip install tensorzero==2026.6.0 nemo-switchyard==0.3.0
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
anchors=${1:?usage: bench/wheel_peers.sh ANCHORS [peers.py options]}
shift
work=$(mktemp -d -t shenron-wheel-peers-XXXX)
echo "+ wheel and fresh venv in $work"
python3 -m venv "$work/venv"
"$work/venv/bin/pip" wheel -q --no-deps -w "$work/dist" "$here"
"$work/venv/bin/pip" install -q "$work"/dist/*.whl

# peers.py starts `shenron` beside the venv's python with a config that says access-log = "off"; this one
# points the log at a file first, as a user who keeps an access log runs it
mkdir -p "$work/logged/bin"
ln -s "$work/venv/bin/python" "$work/logged/bin/python"
cat > "$work/logged/bin/shenron" <<EOF
#!/usr/bin/env bash
for ((i = 1; i < \$#; i++)); do
    if [ "\${!i}" = --config ]; then
        j=\$((i + 1))
        sed -i 's|^access-log = "off"|access-log = "$work/access.log"|' "\${!j}"
    fi
done
exec "$work/venv/bin/shenron" "\$@"
EOF
chmod +x "$work/logged/bin/shenron"

peers=$here/../shared/bench/peers.py
echo "+ access log on ($work/access.log)"
python3 "$peers" --shenron "$work/logged/bin/python" --label log-on --anchors "$anchors" \
    --only 'log-on,log-on ultra-instinct,log-on full-council,tensorzero,switchyard' "$@"
echo "  access log lines written: $(wc -l < "$work/access.log")"
echo "+ access log off"
python3 "$peers" --shenron "$work/venv/bin/python" --label log-off --anchors "$anchors" \
    --only 'log-off,log-off ultra-instinct,log-off full-council,tensorzero,switchyard' "$@"
