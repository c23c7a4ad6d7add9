# A shell script in the style of the upstream tool's tests runs unchanged
# against this module and CLI: options in --opt=value, --opt value and
# short forms, repeated --device, the image name read with --field, a
# watcher in the background, destroy and collect.
# shellcheck shell=bash

# The script under test. It knows nothing of this test suite: it gets the
# tool, two devices and a storage directory, and prints what it saw.
us_script() {
	cat <<'SCRIPT'
#!/bin/bash -e
BLKSNAP=$1
DEVICE_1=$2
DEVICE_2=$3
DIFF_STORAGE=$4

PARAM=()
PARAM+=("--file" "${DIFF_STORAGE}")
PARAM+=("--limit" "64M")
PARAM+=("--device" "${DEVICE_1}")
PARAM+=("--device=${DEVICE_2}")
ID=$(${BLKSNAP} snapshot_create "${PARAM[@]}")
echo "id=${ID}"

${BLKSNAP} snapshot_watcher --id="${ID}" >"${DIFF_STORAGE}/../watcher.log" &
WATCHER_PID=$!

SUM_1=$(md5sum <"${DEVICE_1}")
SUM_2=$(md5sum <"${DEVICE_2}")
${BLKSNAP} snapshot_take --id="${ID}"

IMAGE_1=$(${BLKSNAP} snapshot_info --device="${DEVICE_1}" --field=image)
IMAGE_2=$(${BLKSNAP} snapshot_info -d "${DEVICE_2}" -f image)
echo "image_1=${IMAGE_1}"
echo "image_2=${IMAGE_2}"
${BLKSNAP} snapshot_info --device "${DEVICE_1}"

dd if=/dev/urandom of="${DEVICE_1}" bs=1M count=2 oflag=direct status=none
dd if=/dev/urandom of="${DEVICE_2}" bs=1M count=2 seek=3 oflag=direct status=none
[ "$(md5sum <"${IMAGE_1}")" = "${SUM_1}" ] && echo "image_1 holds the take"
[ "$(md5sum <"${IMAGE_2}")" = "${SUM_2}" ] && echo "image_2 holds the take"

echo "collect:"
${BLKSNAP} snapshot_collect
${BLKSNAP} snapshot_destroy --id "${ID}"
wait ${WATCHER_PID} && echo "watcher ended"
echo "collect after destroy:"
${BLKSNAP} snapshot_collect
${BLKSNAP} cbtinfo --device="${DEVICE_1}" | grep changes_number
${BLKSNAP} detach --device="${DEVICE_1}"
${BLKSNAP} detach -d "${DEVICE_2}"
echo done
SCRIPT
}

test_upstream_style_script() {
	sn_begin
	local a b store out id
	ft_loop 16M
	a=$REPLY
	ft_loop 16M
	b=$REPLY
	dd if=/dev/urandom of="$a" bs=1M count=16 oflag=direct status=none
	dd if=/dev/urandom of="$b" bs=1M count=16 oflag=direct status=none
	mkdir "$FT_DIR/work"
	sn_tmpfs 96M
	store=$REPLY
	us_script >"$FT_DIR/upstream.sh"
	out=$(bash "$FT_DIR/upstream.sh" "$BLKSNAP" "$a" "$b" "$store" 2>&1) || {
		echo "$out"
		fail "the upstream-style script failed"
	}
	id=$(sed -n 's/^id=//p' <<<"$out")
	sn_uuid_ok "$id" || fail "no UUID from snapshot_create: $out"
	# snapshot_collect prints each id followed by a space, then an empty
	# line, as the upstream tool does.
	local expected sp=' '
	expected="id=$id
image_1=/dev/$(sn_image_name "$a")
image_2=/dev/$(sn_image_name "$b")
error_code=0
image=/dev/$(sn_image_name "$a")
image_1 holds the take
image_2 holds the take
collect:
$id$sp

watcher ended
collect after destroy:

changes_number=1
done"
	expect_eq "what the upstream-style script printed" "$expected" "$out"
}
