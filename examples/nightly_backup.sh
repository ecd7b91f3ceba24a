#!/bin/sh
# Nightly backup of a folder to UPYUN with `upclient sync`: a script for cron.
#
#   sh examples/nightly_backup.sh /srv/data
#
# A crontab line (2:30 every night, output kept in a log):
#
#   30 2 * * *  UPYUN_PASSWORD=... /usr/local/bin/nightly_backup.sh /srv/data >>/var/log/backup.log 2>&1
#
# Environment:
#   BACKUP_URL      where to (default upyun://backup@my-service)
#   UPYUN_PASSWORD  the operator's password (read by upclient, never printed)
#   UPYUN_ENDPOINT  the API host, e.g. 127.0.0.1:PORT of `python -m upclient.testing upyun`
#   BACKUP_PREFIX   key prefix (default: this host's name and /)
#   BACKUP_TRIES    runs at most when files fail in a way a retry may fix (default 3)
#   BACKUP_PAUSE    seconds between them (default 300)
#   BACKUP_EXTRA    more flags for upclient sync (e.g. --delete, --store DIR)
#
# Every run sends only what is new or changed: upclient keeps a journal of
# what it finished (~/.local/state/upclient/resume/journal/, or under
# --store DIR) and resumes a file it was sending when it was stopped.  A run
# that starts while the last one still goes exits 6 at once (a lock beside
# the journal): not an error here.  Exit statuses of upclient:
#   0 done, 2 usage, 3 credentials refused, 4 not found (the folder?),
#   5 some files failed and a retry may help, 6 locked, 130 interrupted.
set -u

folder=${1:?usage: nightly_backup.sh FOLDER}
url=${BACKUP_URL:-upyun://backup@my-service}
prefix=${BACKUP_PREFIX:-$(hostname)/}
tries=${BACKUP_TRIES:-3}
pause=${BACKUP_PAUSE:-300}

attempt=1
while :; do
    # shellcheck disable=SC2086  # BACKUP_EXTRA holds several flags
    upclient sync "$folder" "$url" --prefix "$prefix" --no-progress \
        ${UPYUN_ENDPOINT:+--endpoint "$UPYUN_ENDPOINT"} ${BACKUP_EXTRA:-}
    status=$?
    case $status in
        0)
            echo "$(date '+%F %T') backup of $folder done"
            exit 0 ;;
        6)
            echo "$(date '+%F %T') the last backup is still running; nothing done"
            exit 0 ;;
        5)
            if [ "$attempt" -ge "$tries" ]; then
                echo "$(date '+%F %T') backup of $folder incomplete after $attempt runs (exit 5)" >&2
                exit 5
            fi
            echo "$(date '+%F %T') run $attempt: some files failed (exit 5); again in $pause s" >&2
            attempt=$((attempt + 1))
            sleep "$pause" ;;
        *)
            # 2, 3, 4: a person must look (a flag, a password, a missing folder); 130: stopped
            echo "$(date '+%F %T') backup of $folder failed (exit $status); not retrying" >&2
            exit "$status" ;;
    esac
done
