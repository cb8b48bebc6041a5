#!/bin/bash
# test-nbd-tls: TLS (NBD_OPT_STARTTLS, issue 14) with real clients.  A CA,
# a server certificate (localhost, 127.0.0.1) and client certificates
# are made with certtool here, a PSK file with psktool.  Then, in captive
# servers on a Unix socket and TCP 127.0.0.1 (a port the server picks):
#   - --tls=require with certificates: nbdinfo, nbdcopy (nbds:// and
#     nbds+unix://), qemu-img convert/compare and qemu-io (tls-creds-x509)
#     read and write the export, checked against a local copy; plaintext
#     options get NBD_REP_ERR_TLS_REQD and EXPORT_NAME a hang-up
#     (nbd-tls.py) and libnbd without TLS fails; a client that trusts
#     another CA, garbage for a ClientHello, bytes pipelined after
#     STARTTLS and a client that leaves mid-record are refused or dropped,
#     each failed handshake logged once with the peer, and the server
#     still serves a good client with the image intact;
#   - --tls=require with PSK: nbdinfo, nbdcopy, qemu-img with
#     tls-creds-psk; a wrong key and an unknown user fail the handshake;
#   - --tls-verify-peer: a client certificate the CA signed works, none
#     or one of another CA is refused;
#   - --tls=on: plaintext and TLS clients both work; STARTTLS with data
#     is refused, twice is refused, options start over inside TLS, and
#     replies read late over TLS arrive whole (nbd-tls.py);
#   - without --tls STARTTLS gets NBD_REP_ERR_UNSUP;
#   - bad options and files: one line naming the option and the file,
#     exit 2 (usage) or 1 (files), before the image is touched.
. "$RUMPBLK_SRCDIR/tests/functions.sh"
. "$RUMPBLK_SRCDIR/tests/integration/nbd-functions.sh"
# GnuTLS's tools come with the repository's packages (debian-packages.txt):
# missing, they are a failure, not a skip.
command -v certtool >/dev/null || fail "certtool is missing (gnutls-bin)"
command -v psktool >/dev/null || fail "psktool is missing (gnutls-bin)"
requires nbdinfo --version
requires nbdcopy --version
requires qemu-img --version
requires qemu-io --version
requires python3 --version

T=$RUMPBLK_SRCDIR/tests/integration/nbd-tls.py
export T

# --- Credentials ------------------------------------------------------

# ca NAME: a CA in $tmp/NAME-ca-{key,cert}.pem.
ca() {
	certtool --generate-privkey --outfile "$tmp/$1-ca-key.pem" \
	    >/dev/null 2>&1 || fail "certtool: $1 CA key"
	printf 'cn = rumpblk test CA %s\nca\ncert_signing_key\nexpiration_days = 2\n' \
	    "$1" >"$tmp/$1-ca.info"
	certtool --generate-self-signed --load-privkey "$tmp/$1-ca-key.pem" \
	    --template "$tmp/$1-ca.info" --outfile "$tmp/$1-ca-cert.pem" \
	    >/dev/null 2>&1 || fail "certtool: $1 CA certificate"
}

# cert CA KEYOUT CERTOUT ROLE: a key and a certificate signed by CA,
# for the server (localhost, 127.0.0.1) or a client.
cert() {
	local info=$3.info
	certtool --generate-privkey --outfile "$2" >/dev/null 2>&1 ||
	    fail "certtool: key $2"
	if [ "$4" = server ]; then
		printf '%s\n' 'organization = rumpblk test' 'cn = localhost' \
		    'dns_name = localhost' 'ip_address = 127.0.0.1' \
		    'tls_www_server' 'encryption_key' 'signing_key' \
		    'expiration_days = 2' >"$info"
	else
		printf '%s\n' 'organization = rumpblk test' 'cn = client.test' \
		    'tls_www_client' 'encryption_key' 'signing_key' \
		    'expiration_days = 2' >"$info"
	fi
	certtool --generate-certificate --load-ca-certificate \
	    "$tmp/$1-ca-cert.pem" --load-ca-privkey "$tmp/$1-ca-key.pem" \
	    --load-privkey "$2" --template "$info" --outfile "$3" \
	    >/dev/null 2>&1 || fail "certtool: certificate $3"
}

ca good
ca other
# The server's directory (--tls-certificates).
pki=$tmp/pki
mkdir "$pki"
cp "$tmp/good-ca-cert.pem" "$pki/ca-cert.pem"
cert good "$pki/server-key.pem" "$pki/server-cert.pem" server
# Client directories as libnbd and qemu read them: ca-cert.pem, and
# client-cert.pem with client-key.pem when the client shows one.
cli=$tmp/cli		# trusts our CA, has a certificate it signed
nocert=$tmp/nocert	# trusts our CA, no certificate
alien=$tmp/alien	# trusts our CA, certificate of another CA
untrust=$tmp/untrust	# trusts another CA only
mkdir "$cli" "$nocert" "$alien" "$untrust"
cp "$tmp/good-ca-cert.pem" "$cli/ca-cert.pem"
cp "$tmp/good-ca-cert.pem" "$nocert/ca-cert.pem"
cp "$tmp/good-ca-cert.pem" "$alien/ca-cert.pem"
cp "$tmp/other-ca-cert.pem" "$untrust/ca-cert.pem"
cert good "$cli/client-key.pem" "$cli/client-cert.pem" client
cert other "$alien/client-key.pem" "$alien/client-cert.pem" client
# PSK: the file qemu wants is DIR/keys.psk.
psk=$tmp/psk
mkdir "$psk"
psktool -u alice -p "$psk/keys.psk" >/dev/null 2>&1 || fail "psktool"
grep -qE '^alice:[0-9a-f]{64}$' "$psk/keys.psk" ||
    fail "psktool wrote: $(cat "$psk/keys.psk")"
echo "alice:00112233445566778899aabbccddeeff" >"$tmp/wrong.psk"
echo "bob:00112233445566778899aabbccddeeff" >"$tmp/bob.psk"
export pki cli nocert alien untrust psk tmp

src=$tmp/src.img
random_file "$src" $((8 << 20))
img=$tmp/disk.img
truncate -s 8M "$img"
export src img

# --- Bad options and files --------------------------------------------

x=(serve --socket "$tmp/x.sock")
expect_one_error 2 "--tls: 'maybe' is not off, on or require" \
    "${x[@]}" --tls=maybe "$img"
expect_one_error 2 "--tls-certificates: TLS is off; add --tls=on or --tls=require" \
    "${x[@]}" --tls-certificates "$pki" "$img"
expect_one_error 2 "--tls=require: needs --tls-certificates DIR or --tls-psk FILE" \
    "${x[@]}" --tls=require "$img"
expect_one_error 2 "--tls-psk and --tls-certificates: give one of them" \
    "${x[@]}" --tls=on --tls-certificates "$pki" --tls-psk "$psk/keys.psk" "$img"
expect_one_error 2 "--tls-verify-peer: needs --tls-certificates" \
    "${x[@]}" --tls=on --tls-psk "$psk/keys.psk" --tls-verify-peer "$img"
expect_one_error 1 "--tls-certificates: $tmp/none: No such file or directory" \
    "${x[@]}" --tls=on --tls-certificates "$tmp/none" "$img"
# A broken directory: each file missing, unreadable, wrong in turn.
bad=$tmp/badpki
mkdir "$bad"
cp "$pki"/*.pem "$bad"
rm "$bad/server-key.pem"
expect_one_error 1 "--tls-certificates: $bad/server-key.pem: No such file or directory" \
    "${x[@]}" --tls=on --tls-certificates "$bad" "$img"
if [ "$(id -u)" = 0 ]; then
	# root reads any file: a directory is the key that cannot be read.
	mkdir "$bad/server-key.pem"
	expect_one_error 1 "--tls-certificates: $bad/server-key.pem: Is a directory" \
	    "${x[@]}" --tls=on --tls-certificates "$bad" "$img"
	rmdir "$bad/server-key.pem"
else
	cp "$pki/server-key.pem" "$bad/server-key.pem"
	chmod 000 "$bad/server-key.pem"
	expect_one_error 1 "--tls-certificates: $bad/server-key.pem: Permission denied" \
	    "${x[@]}" --tls=on --tls-certificates "$bad" "$img"
	rm -f "$bad/server-key.pem"
fi
echo "not a key" >"$bad/server-key.pem"
expect_one_error 1 "--tls-certificates: $bad/server-key.pem: " \
    "${x[@]}" --tls=on --tls-certificates "$bad" "$img"
cp "$alien/client-key.pem" "$bad/server-key.pem"
expect_one_error 1 "--tls-certificates: $bad/server-cert.pem and $bad/server-key.pem: " \
    "${x[@]}" --tls=on --tls-certificates "$bad" "$img"
cp "$pki/server-key.pem" "$bad/server-key.pem"
: >"$bad/ca-cert.pem"
expect_one_error 1 "--tls-certificates: $bad/ca-cert.pem: " \
    "${x[@]}" --tls=on --tls-certificates "$bad" "$img"
cp "$pki/ca-cert.pem" "$bad/ca-cert.pem"
echo "garbage" >"$bad/ca-crl.pem"
expect_one_error 1 "--tls-certificates: $bad/ca-crl.pem: " \
    "${x[@]}" --tls=on --tls-certificates "$bad" "$img"
expect_one_error 1 "--tls-psk: $tmp/none.psk: No such file or directory" \
    "${x[@]}" --tls=on --tls-psk "$tmp/none.psk" "$img"
printf 'alice:00112233\nbob 0011\n' >"$tmp/bad.psk"
expect_one_error 1 "--tls-psk: $tmp/bad.psk:2: expected USERNAME:HEXKEY" \
    "${x[@]}" --tls=on --tls-psk "$tmp/bad.psk" "$img"
printf 'alice:0011223\n' >"$tmp/bad.psk"
expect_one_error 1 "--tls-psk: $tmp/bad.psk:1: the key must be" \
    "${x[@]}" --tls=on --tls-psk "$tmp/bad.psk" "$img"
printf 'alice:00112233\n\n# a comment\nalice:4455\n' >"$tmp/bad.psk"
expect_one_error 1 "--tls-psk: $tmp/bad.psk:4: user 'alice' has a key already" \
    "${x[@]}" --tls=on --tls-psk "$tmp/bad.psk" "$img"
: >"$tmp/bad.psk"
expect_one_error 1 "--tls-psk: $tmp/bad.psk: no USERNAME:HEXKEY line" \
    "${x[@]}" --tls=on --tls-psk "$tmp/bad.psk" "$img"
# Before anything is touched: --create makes no image.
expect_one_error 1 "--tls-psk: $tmp/none.psk: " \
    "${x[@]}" --tls=on --tls-psk "$tmp/none.psk" --create --size 1M \
    "$tmp/new.img"
[ ! -e "$tmp/new.img" ] || fail "a bad --tls-psk still created the image"
[ ! -e "$tmp/x.sock" ] || fail "a bad TLS option still made the socket"

# --- Clients ----------------------------------------------------------

# clients NAME: write the script $tmp/NAME.sh (from stdin) that the
# captive server runs; it sees $uri, $port, $unixsocket.
clients() {
	{
		echo 'set -u'
		echo 'fail() { echo "FAIL: $*" >&2; exit 1; }'
		echo 'to() { timeout -k 5 60 "$@"; }'
		cat
	} >"$tmp/$1.sh"
}

# log_has LOG PATTERN COUNT WHAT: PATTERN is on exactly COUNT lines.
log_has() {
	local n
	n=$(grep -cE -- "$2" "$1")
	[ "$n" = "$3" ] ||
	    fail "$4: $n lines match '$2' in the server's log, expected $3: $(cat "$1")"
}

# --tls=require, certificates, on a Unix socket and on TCP.
clients x509 <<'EOF'
case $uri in
nbds+unix://*tls-certificates=*) ;;
*) fail "\$uri is $uri" ;;
esac
tcp=nbds://127.0.0.1:$port/
to nbdinfo "$uri" >"$tmp/info" || fail "nbdinfo $uri"
grep -q 'with TLS' "$tmp/info" || fail "nbdinfo: $(cat "$tmp/info")"
# Write over TCP, read back over the Unix socket.
to nbdcopy "$src" "$tcp?tls-certificates=$cli" || fail "nbdcopy to $tcp"
to nbdcopy "nbds+unix:///?socket=$unixsocket&tls-certificates=$cli" \
    "$tmp/back.img" || fail "nbdcopy from the Unix socket"
cmp "$src" "$tmp/back.img" || fail "nbdcopy: the data read back differs"
q=(--object tls-creds-x509,id=tls0,dir=$cli,endpoint=client)
nbd=driver=nbd,server.type=inet,server.host=127.0.0.1,server.port=$port,tls-creds=tls0
to qemu-img compare "${q[@]}" --image-opts "driver=file,filename=$src" \
    "$nbd" >/dev/null || fail "qemu-img compare over TLS"
head -c 1M /dev/urandom >"$tmp/part"
cp "$src" "$tmp/local.img"
dd if="$tmp/part" of="$tmp/local.img" bs=1M seek=3 conv=notrunc status=none
to qemu-img convert -n "${q[@]}" -f raw "$tmp/local.img" \
    --target-image-opts "$nbd" || fail "qemu-img convert over TLS"
to qemu-io "${q[@]}" --image-opts "$nbd" -c "write -P 0x5a 5M 64k" \
    -c "read -P 0x5a 5M 64k" >"$tmp/qio" || fail "qemu-io over TLS"
grep -q 'read 65536/65536' "$tmp/qio" || fail "qemu-io: $(cat "$tmp/qio")"
head -c 65536 /dev/zero | tr '\0' Z |
    dd of="$tmp/local.img" bs=64k seek=80 conv=notrunc status=none
to nbdcopy "$tcp?tls-certificates=$cli" "$tmp/back.img" ||
    fail "nbdcopy back"
cmp "$tmp/local.img" "$tmp/back.img" || fail "qemu-img/qemu-io data differs"
# Plaintext: refused with NBD_REP_ERR_TLS_REQD, EXPORT_NAME hung up on.
to python3 "$T" --tcp "127.0.0.1:$port" require-plain ||
    fail "plaintext client under --tls=require"
to python3 "$T" --unix "$unixsocket" require-plain ||
    fail "plaintext client under --tls=require (Unix socket)"
LIBNBD_DEBUG=1 to nbdinfo "nbd://127.0.0.1:$port/" >/dev/null 2>"$tmp/plain" &&
    fail "a plaintext libnbd client was served under --tls=require"
grep -q 'TLS is required' "$tmp/plain" ||
    fail "libnbd does not see NBD_REP_ERR_TLS_REQD: $(tail -5 "$tmp/plain")"
# Bad TLS clients; the good one is served after each.
good() {
	to nbdinfo "$tcp?tls-certificates=$cli" >/dev/null ||
	    fail "a good client after $1"
}
to nbdinfo "$tcp?tls-certificates=$untrust" >/dev/null 2>&1 &&
    fail "a client that trusts another CA accepted the server"
good "an untrusting client"
to python3 "$T" --tcp "127.0.0.1:$port" garbage-hello || fail garbage-hello
good garbage-hello
to python3 "$T" --unix "$unixsocket" starttls-pipelined ||
    fail starttls-pipelined
good starttls-pipelined
to python3 "$T" --tcp "127.0.0.1:$port" --ca "$cli/ca-cert.pem" mid-record ||
    fail mid-record
good mid-record
# The WRITE cut mid-record wrote nothing.
to nbdcopy "$tcp?tls-certificates=$cli" "$tmp/back.img" || fail "nbdcopy"
cmp "$tmp/local.img" "$tmp/back.img" || fail "the image changed after mid-record"
EOF
serve --socket "$tmp/s" --listen 127.0.0.1:0 --tls=require \
    --tls-certificates "$pki" --run "bash $tmp/x509.sh" "$img" \
    2>"$tmp/log-x509" || fail "x509 clients: $(cat "$tmp/log-x509")"
# One line per failed handshake, with the peer: the untrusting client
# (its alert), the garbage; not the client that left mid-record after
# its handshake, whose drop is one line of its own.
log_has "$tmp/log-x509" 'TLS handshake with 127\.0\.0\.1:[0-9]+ failed: ' 2 \
    "x509 handshake failures"
log_has "$tmp/log-x509" "client unix sent data after STARTTLS" 1 \
    "STARTTLS pipelining"
log_has "$tmp/log-x509" "asked for the export without TLS" 2 \
    "EXPORT_NAME without TLS"
cmp "$tmp/local.img" "$img" || fail "the image on disk is not what was written"

# --tls=require, PSK.
clients psk <<'EOF'
case $uri in
nbds+unix://alice@/\?socket=*\&tls-psk-file=*) ;;
*) fail "\$uri is $uri" ;;
esac
to nbdinfo "$uri" >"$tmp/info" || fail "nbdinfo $uri"
grep -q 'with TLS' "$tmp/info" || fail "nbdinfo: $(cat "$tmp/info")"
u="nbds://alice@127.0.0.1:$port/?tls-psk-file=$psk/keys.psk"
head -c 8M /dev/urandom >"$tmp/psk-src"
to nbdcopy "$tmp/psk-src" "$u" || fail "nbdcopy to $u"
to nbdcopy "$u" "$tmp/back.img" || fail "nbdcopy from $u"
cmp "$tmp/psk-src" "$tmp/back.img" || fail "PSK: the data read back differs"
q=(--object tls-creds-psk,id=tls0,dir=$psk,username=alice,endpoint=client)
nbd=driver=nbd,server.type=inet,server.host=127.0.0.1,server.port=$port,tls-creds=tls0
to qemu-img compare "${q[@]}" --image-opts \
    "driver=file,filename=$tmp/psk-src" "$nbd" >/dev/null ||
    fail "qemu-img compare over TLS-PSK"
to nbdinfo "nbds://alice@127.0.0.1:$port/?tls-psk-file=$tmp/wrong.psk" \
    >/dev/null 2>&1 && fail "a wrong key was accepted"
to nbdinfo "$u" >/dev/null || fail "a good client after a wrong key"
to nbdinfo "nbds+unix://bob@/?socket=$unixsocket&tls-psk-file=$tmp/bob.psk" \
    >/dev/null 2>&1 && fail "an unknown user was accepted"
to nbdinfo "nbds+unix://alice@/?socket=$unixsocket&tls-psk-file=$psk/keys.psk" \
    >/dev/null || fail "a good client after an unknown user"
EOF
serve --listen 127.0.0.1:0 --socket "$tmp/s" --tls=require \
    --tls-psk "$psk/keys.psk" --run "bash $tmp/psk.sh" "$img" \
    2>"$tmp/log-psk" || fail "PSK clients: $(cat "$tmp/log-psk")"
log_has "$tmp/log-psk" 'TLS handshake with 127\.0\.0\.1:[0-9]+ failed: ' 1 \
    "the wrong key"
log_has "$tmp/log-psk" 'TLS handshake with unix failed: ' 1 \
    "the unknown user"

# --tls-verify-peer.
clients verify <<'EOF'
tcp=nbds://127.0.0.1:$port/
to nbdinfo "$tcp?tls-certificates=$cli" >/dev/null ||
    fail "a client with a certificate our CA signed"
to nbdinfo "$tcp?tls-certificates=$nocert" >/dev/null 2>&1 &&
    fail "a client without a certificate was served"
to nbdinfo "$tcp?tls-certificates=$alien" >/dev/null 2>&1 &&
    fail "a client with a certificate of another CA was served"
to nbdcopy "$tcp?tls-certificates=$cli" "$tmp/back.img" ||
    fail "a good client afterwards"
EOF
serve --listen 127.0.0.1:0 --tls=require --tls-certificates "$pki" \
    --tls-verify-peer --run "bash $tmp/verify.sh" "$img" \
    2>"$tmp/log-verify" || fail "verify-peer clients: $(cat "$tmp/log-verify")"
log_has "$tmp/log-verify" 'TLS handshake with 127\.0\.0\.1:[0-9]+ failed: ' 2 \
    "clients refused by --tls-verify-peer"
grep -q 'failed: .*[Cc]ertificate' "$tmp/log-verify" ||
    fail "--tls-verify-peer: the log does not say why: $(cat "$tmp/log-verify")"

# --tls=on: plaintext and TLS.
clients on <<'EOF'
to nbdinfo "nbd+unix:///?socket=$unixsocket" >"$tmp/info" ||
    fail "plaintext nbdinfo under --tls=on"
grep -q 'without TLS' "$tmp/info" || fail "plaintext: $(cat "$tmp/info")"
to nbdinfo "$uri" >"$tmp/info" || fail "nbdinfo $uri"
grep -q 'with TLS' "$tmp/info" || fail "TLS: $(cat "$tmp/info")"
to python3 "$T" --unix "$unixsocket" starttls-data || fail starttls-data
to python3 "$T" --unix "$unixsocket" --ca "$cli/ca-cert.pem" --image "$img" \
    starttls-twice || fail "starttls-twice (Unix socket)"
to python3 "$T" --tcp "127.0.0.1:$port" --ca "$cli/ca-cert.pem" \
    --image "$img" starttls-twice || fail "starttls-twice (TCP)"
EOF
serve --socket "$tmp/s" --listen 127.0.0.1:0 --tls=on \
    --tls-certificates "$pki" --run "bash $tmp/on.sh" "$img" \
    2>"$tmp/log-on" || fail "--tls=on clients: $(cat "$tmp/log-on")"
log_has "$tmp/log-on" 'TLS' 0 "--tls=on"

# No --tls: STARTTLS is not supported.
serve --socket "$tmp/s" --run "timeout 60 python3 '$T' --unix \"\$unixsocket\" off-starttls" \
    "$img" || fail "STARTTLS without --tls"

echo "test-nbd-tls: ok"
