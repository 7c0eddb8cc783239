#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
# mpqemu-remote with -sandbox off, for the leak-check runs of sanitizer
# builds: a confined remote skips LeakSanitizer's exit check, which needs
# ptrace and /proc.  The last -sandbox option wins.
exec "${MPQEMU_REMOTE_BINARY:?}" "$@" -sandbox off
